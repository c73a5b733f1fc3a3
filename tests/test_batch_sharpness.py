"""Batch sharpness against dense per-batch Hessians (jax.hessian) on a tiny problem, in float64."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from dynamics.curvature.batch_sharpness import batch_indices, batch_sharpness
from dynamics.losses import mse
from dynamics.models import build_model

N, B = 8, 3


def problem():
    k_x, k_y, k_p = jax.random.split(jax.random.key(0), 3)
    model = build_model("mlp", (2,), 2, widths=[4], activation="tanh")
    params = jax.tree.map(lambda p: p.astype(jnp.float64), model.init(k_p))
    x = jax.random.normal(k_x, (N, 2), jnp.float64)
    y = jax.random.normal(k_y, (N, 2), jnp.float64)
    return model, params, x, y


def make_dense(model, params, x, y):
    """``dense(ix, m=None, beta=0) -> (sᵀH_B s/sᵀg_B, sᵀH_B s, sᵀg_B)`` from the dense batch Hessian
    (jax.hessian), with s = βm + g_B (s = g_B without m)."""
    flat, unravel = ravel_pytree(params)

    @jax.jit
    def f(ix, m, beta):
        loss = lambda w: mse(model.apply(unravel(w), x[ix]), y[ix])  # noqa: E731
        g = jax.grad(loss)(flat)
        H = jax.hessian(loss)(flat)
        s = beta * m + g
        return s @ H @ s / (s @ g), s @ H @ s, s @ g

    def dense(ix, m=None, beta=0.0):
        m = jnp.zeros_like(flat) if m is None else m
        return tuple(float(v) for v in f(jnp.asarray(ix), m, beta))

    return dense


def loss_fn(model):
    return lambda p, batch: mse(model.apply(p, batch[0]), batch[1])


def test_per_batch_values_match_dense_hessians():
    with jax.enable_x64(True):
        model, params, x, y = problem()
        key = jax.random.key(3)
        bs = jax.jit(lambda p, d: batch_sharpness(loss_fn(model), p, d, key=key, batch_size=B,
                                                  num_batches=6, chunk=2))(params, (x, y))
        idx = np.asarray(batch_indices(key, N, B, 6))
        assert all(len(set(row)) == B for row in idx)  # distinct within a batch
        dense_ratio = make_dense(model, params, x, y)
        dense = [dense_ratio(row) for row in idx]
        np.testing.assert_allclose(bs.values, [d[0] for d in dense], rtol=1e-10)
        assert float(bs.estimate) == pytest.approx(np.mean([d[0] for d in dense]), rel=1e-12)
        assert float(bs.stderr) == pytest.approx(
            np.std([d[0] for d in dense], ddof=1) / np.sqrt(6), rel=1e-10)
        assert float(bs.ratio_of_means) == pytest.approx(
            sum(d[1] for d in dense) / sum(d[2] for d in dense), rel=1e-10)


def test_estimate_agrees_with_the_exact_expectation_within_its_standard_error():
    """Exact E_B over all C(8, 3) = 56 batches; 400 draws must land within 4 standard errors."""
    with jax.enable_x64(True):
        model, params, x, y = problem()
        dense_ratio = make_dense(model, params, x, y)
        exact = np.mean([dense_ratio(np.array(c))[0]
                         for c in itertools.combinations(range(N), B)])
        f = jax.jit(lambda p, d, k: batch_sharpness(loss_fn(model), p, d, key=k, batch_size=B,
                                                    num_batches=400))
        bs = f(params, (x, y), jax.random.key(11))
        assert float(bs.stderr) > 0
        assert abs(float(bs.estimate) - exact) <= 4 * float(bs.stderr), (bs.estimate, exact,
                                                                          bs.stderr)
        assert float(bs.stderr) < 0.1 * abs(exact)
        # the full batch is deterministic: the Rayleigh quotient of the full Hessian along g
        full = jax.jit(lambda p, d: batch_sharpness(loss_fn(model), p, d, key=jax.random.key(0),
                                                    batch_size=N, num_batches=3))(params, (x, y))
        want = dense_ratio(np.arange(N))[0]
        assert float(full.estimate) == pytest.approx(want, rel=1e-10)
        assert float(full.stderr) == pytest.approx(0.0, abs=1e-10 * abs(want))


def test_with_replacement_and_momentum_direction():
    with jax.enable_x64(True):
        model, params, x, y = problem()
        flat, unravel = ravel_pytree(params)
        m = jax.random.normal(jax.random.key(4), flat.shape, flat.dtype)
        key = jax.random.key(5)
        bs = batch_sharpness(loss_fn(model), params, (x, y), key=key, batch_size=B,
                             num_batches=5, sampling="with_replacement", velocity=unravel(m),
                             momentum=0.9)
        idx = np.asarray(batch_indices(key, N, B, 5, "with_replacement"))
        dense_ratio = make_dense(model, params, x, y)
        want = [dense_ratio(row, m, 0.9)[0] for row in idx]
        np.testing.assert_allclose(bs.values, want, rtol=1e-10)
        with pytest.raises(ValueError, match="with_replacement"):
            batch_indices(key, N, B, 5, "bootstrap")
