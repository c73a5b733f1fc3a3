"""Probes wired into training measure what they claim: checked against dense f64 Hessians."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from dynamics.curvature import adaptive_preconditioner
from dynamics.data import build_dataset
from dynamics.losses import LOSSES
from dynamics.models import build_model
from dynamics.optim import build_optimizer, hyperparams_of
from dynamics.probes import PROBES, ProbeContext
from dynamics.train import TrainState, make_step

HP = {"lr": 0.1, "momentum": 0.9, "b1": 0.9, "b2": 0.99, "eps": 1e-8, "weight_decay": 0.0}


def setup(optimizer="gd", loss="mse", model="mlp", steps=3):
    data = build_dataset("synthetic", jax.random.key(0), n_train=24, n_test=8, dim=4, num_classes=3,
                         dtype=jnp.float64)
    net = build_model(model, (4,), 3, widths=[6], activation="tanh")
    params = jax.tree.map(lambda p: p.astype(jnp.float64), net.init(jax.random.key(1)))
    tx = build_optimizer(optimizer, **HP)
    step = make_step(net.apply, LOSSES.get(loss), tx, batch_size=None, classification=True)
    state = TrainState(jnp.asarray(0), params, tx.init(params), jax.random.key(2))
    for _ in range(steps):
        state = step(state, data.x_train, data.y_train)[0]
    ctx = ProbeContext(net.apply, LOSSES.get(loss), data, optimizer, hyperparams_of(optimizer, HP),
                       step)
    return ctx, state, data


def dense(loss, apply_fn, params, x, y):
    flat, unravel = ravel_pytree(params)
    return np.asarray(jax.jit(jax.hessian(lambda f: loss(apply_fn(unravel(f), x), y)))(flat))


def measure(name, ctx, state, **options):
    probe = PROBES.get(name)(ctx, state.params, jax.random.key(3), every=10, tol=1e-9,
                             max_iters=2000, **options)
    return probe.measure(state, probe.init_state, jax.random.key(4))[0]


@pytest.mark.parametrize("where", ["iterate", "midpoint"])
def test_sharpness_probe_top_two_at_iterate_and_midpoint(where):
    with jax.enable_x64(True):
        ctx, state, data = setup()
        metrics = measure("sharpness", ctx, state, k=2, where=where)
        point = state.params
        if where == "midpoint":
            nxt = ctx.step_fn(state, data.x_train, data.y_train)[0].params
            point = jax.tree.map(lambda a, b: (a + b) / 2, point, nxt)
        evals = np.linalg.eigvalsh(dense(ctx.loss, ctx.apply_fn, point, data.x_train, data.y_train))
        assert metrics["sharpness"] == pytest.approx(evals[-1], rel=1e-6)
        assert metrics["sharpness_2"] == pytest.approx(evals[-2], rel=1e-6)
        assert bool(metrics["sharpness_converged"])


def test_loss_sharpness_measures_another_loss():
    with jax.enable_x64(True):
        ctx, state, data = setup(loss="sqrt_mse")
        metrics = measure("loss_sharpness", ctx, state)
        H = dense(LOSSES.get("mse"), ctx.apply_fn, state.params, data.x_train, data.y_train)
        assert metrics["loss_sharpness"] == pytest.approx(np.linalg.eigvalsh(H)[-1], rel=1e-6)
        trained = measure("sharpness", ctx, state)["sharpness"]
        H_sqrt = dense(ctx.loss, ctx.apply_fn, state.params, data.x_train, data.y_train)
        assert trained == pytest.approx(np.linalg.eigvalsh(H_sqrt)[-1], rel=1e-6)


def test_precond_sharpness_probe_matches_dense_adam_preconditioned_hessian():
    with jax.enable_x64(True):
        ctx, state, data = setup(optimizer="adam")
        metrics = measure("precond_sharpness", ctx, state)
        P = ravel_pytree(adaptive_preconditioner(state.opt_state))[0]
        H = dense(ctx.loss, ctx.apply_fn, state.params, data.x_train, data.y_train)
        d = 1 / np.sqrt(np.asarray(P))
        want = np.linalg.eigvalsh(d[:, None] * H * d[None, :])[-1]
        assert metrics["precond_sharpness"] == pytest.approx(want, rel=1e-6)
        # by hand for the locuslab convention: P = (1 − b1^t)(√(ν/(1 − b2^t)) + ε), t = 3
        nu = ravel_pytree(state.opt_state.inner_state[0].nu)[0]
        by_hand = (1 - 0.9**3) * (np.sqrt(np.asarray(nu) / (1 - 0.99**3)) + 1e-8)
        np.testing.assert_allclose(P, by_hand, rtol=1e-10)


@pytest.mark.slow  # make test-all; spherical sharpness itself: tests/test_curvature_toolkit.py
def test_spherical_sharpness_probe_on_a_scale_invariant_net():
    with jax.enable_x64(True):
        ctx, state, data = setup(model="scale_invariant_mlp", loss="cross_entropy")
        x, y = data.x_train, data.y_train
        # scale invariance of the model: f(cθ) = f(θ)
        scaled = jax.tree.map(lambda p: 3.0 * p, state.params)
        np.testing.assert_allclose(ctx.apply_fn(scaled, x), ctx.apply_fn(state.params, x), rtol=1e-9)
        metrics = measure("spherical_sharpness", ctx, state)
        flat = ravel_pytree(state.params)[0]
        norm = float(jnp.linalg.norm(flat))
        unit = jax.tree.map(lambda p: p / norm, state.params)
        want = np.linalg.eigvalsh(dense(ctx.loss, ctx.apply_fn, unit, x, y))[-1]
        assert metrics["spherical_sharpness"] == pytest.approx(want, rel=1e-6)
        assert metrics["param_norm"] == pytest.approx(norm)
        assert metrics["eta_eff"] == pytest.approx(0.1 / norm**2)
        assert metrics["spherical_sharpness_x_eta_eff"] == pytest.approx(want * 0.1 / norm**2, rel=1e-6)


def test_trace_probe_is_within_its_standard_error_of_the_dense_trace():
    with jax.enable_x64(True):
        ctx, state, data = setup()
        probe = PROBES.get("trace")(ctx, state.params, jax.random.key(3), every=10, num_samples=60,
                                    method="hutchinson")
        metrics = probe.measure(state, probe.init_state, jax.random.key(5))[0]
        exact = np.trace(dense(ctx.loss, ctx.apply_fn, state.params, data.x_train, data.y_train))
        assert abs(float(metrics["hessian_trace"]) - exact) <= 4 * float(metrics["hessian_trace_stderr"])
