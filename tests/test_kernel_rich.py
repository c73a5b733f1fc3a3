"""kernel_rich's GD loop: the early exit (a while loop over chunks) logs what a full scan logs; the places
between the ℓ1 and ℓ2 interpolants (l1_excess, l1_frac) on hand-computed numbers."""

import jax
import jax.numpy as jnp
import numpy as np

from dynamics.flows import diag_map, init_params, run_gd, sparse_regression
from dynamics.scan import log_steps
from dynamics.tasks.kernel_rich import _gd_until_converged, _l1_excess, _l1_frac


def test_early_exit_logs_what_the_full_scan_logs(x64):
    Z, y, _ = sparse_regression(jax.random.key(0), 12, 6, 2, jnp.float64)
    w0 = init_params(12, 1.0, dtype=jnp.float64) * 0.5
    steps, every, tol = 5003, 500, 1e-6
    _, full = run_gd("uu_minus_vv", w0, Z, y, lr=0.02, steps=steps, log_every=every, tol=tol)
    xs, ran = jax.jit(lambda w: _gd_until_converged(w, Z, y, 0.02, steps, every, tol))(w0)
    x_full = np.asarray(jax.vmap(lambda w: diag_map("uu_minus_vv", w))(full))
    assert xs.shape == x_full.shape == (len(log_steps(steps, every)), 12)
    np.testing.assert_allclose(np.asarray(xs), x_full, rtol=0, atol=1e-13)
    assert np.linalg.norm(Z @ xs[-1] - y) < tol and 0 < int(ran) < steps  # it exited early
    # a budget too small to converge runs every step
    xs, ran = jax.jit(lambda w: _gd_until_converged(w, Z, y, 0.02, 1003, every, tol))(w0)
    assert int(ran) == 1003 and np.linalg.norm(Z @ xs[-1] - y) >= tol


def test_l1_excess_and_l1_frac_on_hand_computed_numbers():
    x_l1, x_l2 = np.array([1.0, 0.0, 0.0]), np.array([0.5, 0.5, 0.5])  # ‖·‖₁: 1 and 1.5; distance √0.75
    x = np.array([[0.8, 0.2, -0.1], [1.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
    np.testing.assert_allclose(_l1_excess(x_l1, x_l2)(x), [(1.1 - 1) / 0.5, 0.0, 1.0], atol=1e-15)
    np.testing.assert_allclose(_l1_frac(x_l1, x_l2)(x), [np.sqrt(0.04 + 0.04 + 0.01 / 1) / np.sqrt(0.75), 0, 1])
    np.testing.assert_allclose(_l1_frac(x_l1, x_l2)(x, x_l2), [np.sqrt(0.09 + 0.09 + 0.36) / np.sqrt(0.75), 1, 0])
    # scale-free: y → c·y scales every interpolant by c
    np.testing.assert_allclose(_l1_excess(3 * x_l1, 3 * x_l2)(3 * x), _l1_excess(x_l1, x_l2)(x), atol=1e-15)
