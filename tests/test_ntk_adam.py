"""Task ntk's Adam half (``dynamics.tasks.ntk_adam``): per-example SignGD-limit Adam against the kernel
analog f ← f − η sign(f(x_i) − y_i) K^A(·, x_i) of Malladi et al.

Oracles: for a model linear in its parameters the analog is exact (its Jacobian is constant), so per-example
Adam with β₁ = β₂ = ε = 0 must equal it to rounding; for a tanh MLP the gap must be first order in η;
the step update itself must be sign(g) (Adam's first step, or β = 0)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dynamics.ntk import flat_jacobian
from dynamics.tasks import ntk_adam


@pytest.fixture
def data(x64):
    del x64
    x = jax.random.normal(jax.random.key(0), (14, 6), jnp.float64)
    y = jnp.where(jnp.arange(10) % 2 == 0, 1.0, -1.0)
    return x[:10], y, x[10:]


def _kernels(f, params, x_tr, x_te):
    j_tr, j_te = flat_jacobian(f, params, x_tr)[:, 0], flat_jacobian(f, params, x_te)[:, 0]
    return j_tr @ jnp.sign(j_tr).T, j_te @ jnp.sign(j_tr).T, j_tr @ j_tr.T, j_te @ j_tr.T


def test_sign_kernel_dynamics_is_per_example_signgd_exactly_for_a_linear_model(data):
    x_tr, y, x_te = data
    features = lambda x: jnp.tanh(x @ jnp.arange(1.0, 19.0).reshape(6, 3) / 10)  # fixed features φ(x)

    def f(theta, x):
        return (jnp.concatenate([features(x), x], axis=1) @ theta)[:, None]

    theta0 = jax.random.normal(jax.random.key(1), (9,), jnp.float64)
    order = jnp.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 0, 7, 8])
    tx = optax.adam(0.05, b1=0.0, b2=0.0, eps=0.0)
    theta, losses = ntk_adam.per_example_train(f, tx, theta0, x_tr, y, order)
    ka_tr, ka_te, _, _ = _kernels(f, theta0, x_tr, x_te)
    f_tr, f_te = ntk_adam.sign_kernel_dynamics(ka_tr, ka_te, f(theta0, x_tr)[:, 0], f(theta0, x_te)[:, 0],
                                               y, order, 0.05)
    np.testing.assert_allclose(f(theta, x_te)[:, 0], f_te, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(f(theta, x_tr)[:, 0], f_tr, rtol=1e-12, atol=1e-12)
    assert losses.shape == order.shape
    # SignGD moves every parameter by exactly ±η per step: on the η·ℤ lattice around θ₀
    steps = (theta - theta0) / 0.05
    np.testing.assert_allclose(steps, jnp.round(steps), atol=1e-9)


def test_sign_kernel_dynamics_matches_signgd_on_an_mlp_to_first_order_in_the_step(data):
    x_tr, y, x_te = data
    k1, k2 = jax.random.split(jax.random.key(2))
    params0 = {"w1": jax.random.normal(k1, (6, 32), jnp.float64) / 6 ** 0.5,
               "w2": jax.random.normal(k2, (32, 2), jnp.float64) / 32 ** 0.5}
    apply_fn = lambda p, x: jnp.tanh(x @ p["w1"]) @ p["w2"]
    f = ntk_adam.binary_output(apply_fn, (0, 1))
    np.testing.assert_allclose(f(params0, x_te)[:, 0], apply_fn(params0, x_te) @ jnp.array([-1.0, 1.0]))
    ka_tr, ka_te, k_tr, k_te = _kernels(f, params0, x_tr, x_te)
    order = jnp.tile(jnp.arange(10), 2)
    y = 10 * y  # far targets: sign(χ) never flips, so the only gap is the kernel's drift (first order)
    f0_tr, f0_te = f(params0, x_tr)[:, 0], f(params0, x_te)[:, 0]
    gaps, entk = [], []
    for lr in (1e-3, 2.5e-4):
        params, _ = ntk_adam.per_example_train(f, optax.adam(lr, b1=0.0, b2=0.0, eps=1e-12), params0, x_tr, y,
                                               order)
        ft = f(params, x_te)[:, 0]
        moved = jnp.linalg.norm(ft - f0_te)
        _, fa = ntk_adam.sign_kernel_dynamics(ka_tr, ka_te, f0_tr, f0_te, y, order, lr)
        _, fe = ntk_adam.sign_kernel_dynamics(k_tr, k_te, f0_tr, f0_te, y, order,
                                              lr * float(jnp.trace(ka_tr) / jnp.trace(k_tr)))
        gaps.append(float(jnp.linalg.norm(ft - fa) / moved))
        entk.append(float(jnp.linalg.norm(ft - fe) / moved))
    assert gaps[0] < 0.05, gaps
    # the gap vanishes with the step: measured ∝ η^½ (signs of near-zero gradient entries flip as θ moves,
    # which a kernel frozen at θ₀ cannot follow); a quarter of the step at least halves it
    assert gaps[1] < 0.6 * gaps[0], gaps
    assert min(entk) > 5 * gaps[0], entk  # the eNTK is a different kernel, not a rounding of this one


def test_adam_first_step_and_zero_betas_are_sign_steps(x64):
    g = {"a": jnp.array([3.0, -1e-3, 0.5]), "b": jnp.array([[-2.0]])}
    for b1, b2 in ((0.9, 0.999), (0.0, 0.0)):
        tx = optax.adam(0.1, b1=b1, b2=b2, eps=0.0)
        updates, _ = tx.update(g, tx.init(g))
        for u, gi in zip(jax.tree.leaves(updates), jax.tree.leaves(g)):
            np.testing.assert_allclose(u, -0.1 * jnp.sign(gi), rtol=1e-12)
