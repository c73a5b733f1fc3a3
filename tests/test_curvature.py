"""HVP and top eigenvalue against dense Hessians (jax.hessian + eigh), in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from dynamics.curvature import hvp, top_eigenvalue
from dynamics.losses import mse
from dynamics.models import build_model


def tiny_problem(key, activation="tanh"):
    k_x, k_y, k_p = jax.random.split(key, 3)
    model = build_model("mlp", (3,), 2, widths=[5], activation=activation)
    params = jax.tree.map(lambda p: p.astype(jnp.float64), model.init(k_p))
    x = jax.random.normal(k_x, (20, 3), jnp.float64)
    y = jax.random.normal(k_y, (20, 2), jnp.float64)
    return model, params, x, y


def dense_hessian(loss_fn, params):
    flat, unravel = ravel_pytree(params)
    return jax.jit(jax.hessian(lambda f: loss_fn(unravel(f))))(flat)


def test_hvp_matches_dense_hessian(key):
    with jax.enable_x64(True):
        model, params, x, y = tiny_problem(key)
        v = jax.tree.map(lambda p: jax.random.normal(jax.random.key(1), p.shape, p.dtype), params)

        @jax.jit
        def hv(params, v, x, y):
            return hvp(lambda p: mse(model.apply(p, x), y), params, v)

        got = ravel_pytree(hv(params, v, x, y))[0]
        H = dense_hessian(lambda p: mse(model.apply(p, x), y), params)
        want = H @ ravel_pytree(v)[0]
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_top_eigenvalue_matches_eigh(key, activation):
    with jax.enable_x64(True):
        model, params, x, y = tiny_problem(key, activation)

        @jax.jit
        def solve(params, x, y, key):
            return top_eigenvalue(lambda p: mse(model.apply(p, x), y), params, key=key, tol=1e-9,
                                  max_iters=5000)

        res = solve(params, x, y, jax.random.key(3))
        H = dense_hessian(lambda p: mse(model.apply(p, x), y), params)
        evals, evecs = np.linalg.eigh(np.asarray(H))
        assert bool(res.converged)
        assert abs(float(res.value) - evals[-1]) <= 1e-6 * abs(evals[-1])
        v = ravel_pytree(res.vector)[0]
        assert abs(abs(float(v @ evecs[:, -1])) - 1.0) < 1e-5
        # a warm start from the answer converges at once
        warm = top_eigenvalue(lambda p: mse(model.apply(p, x), y), params, key=key, tol=1e-9,
                              init=res.vector)
        assert int(warm.num_matvecs) <= 2 < int(res.num_matvecs)


def test_top_eigenvalue_is_largest_algebraic_not_magnitude(key):
    """A spectrum dominated in magnitude by a negative eigenvalue: the answer is the top one."""
    with jax.enable_x64(True):
        q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(6, 6)))
        evals = np.array([-9.0, -4.0, -1.0, 0.5, 2.0, 3.0])
        A = jnp.asarray(q @ np.diag(evals) @ q.T)
        res = top_eigenvalue(lambda w: 0.5 * w @ A @ w, jnp.ones(6), key=key, tol=1e-10,
                             max_iters=5000)
        assert abs(float(res.value) - 3.0) < 1e-7
        all_negative = top_eigenvalue(lambda w: -0.5 * w @ (A @ A) @ w - 0.0, jnp.ones(6), key=key,
                                      tol=1e-10, max_iters=5000)
        assert abs(float(all_negative.value) - (-0.25)) < 1e-7  # -min(evals**2)
