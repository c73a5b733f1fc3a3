"""Losses, models and optimizers against explicit formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dynamics.errors import ConfigError
from dynamics.losses import accuracy, cross_entropy, mse
from dynamics.models import MODELS, build_model, num_params
from dynamics.optim import OPTIMIZERS, build_optimizer

HPARAMS = {"lr": 0.05, "momentum": 0.9, "b1": 0.9, "b2": 0.99, "eps": 1e-8, "weight_decay": 0.0}


def test_mse_is_half_squared_error_summed_over_outputs_mean_over_examples():
    f = jnp.array([[1.0, 2.0], [0.0, -1.0], [3.0, 0.5]])
    y = jnp.array([[0.0, 2.0], [1.0, 1.0], [3.0, 0.0]])
    want = np.mean([0.5 * 1.0, 0.5 * (1.0 + 4.0), 0.5 * 0.25])
    assert float(mse(f, y)) == pytest.approx(want)
    labels = jnp.array([1, 0, 0])  # integer labels are one-hot encoded
    onehot = np.eye(2)[[1, 0, 0]]
    assert float(mse(f, labels)) == pytest.approx(float(np.mean(0.5 * np.sum((f - onehot) ** 2, 1))))


def test_cross_entropy_and_accuracy():
    f = jnp.array([[2.0, 0.0, -1.0], [0.1, 0.2, 0.3]])
    y = jnp.array([0, 1])
    logp = np.log(np.exp(f) / np.exp(f).sum(1, keepdims=True))
    assert float(cross_entropy(f, y)) == pytest.approx(-(logp[0, 0] + logp[1, 1]) / 2, rel=1e-6)
    assert float(accuracy(f, y)) == 0.5


def test_mlp_matches_explicit_forward_and_torch_init(key):
    model = build_model("mlp", (32,), 4, widths=[64, 64], activation="tanh", init="torch")
    params = model.init(key)
    assert num_params(params) == 32 * 64 + 64 + 64 * 64 + 64 + 64 * 4 + 4 == 6532
    w0, b0 = params["dense_0"]["kernel"], params["dense_0"]["bias"]
    bound = 1 / np.sqrt(32)
    assert float(jnp.max(jnp.abs(w0))) <= bound and float(jnp.max(jnp.abs(b0))) <= bound
    assert float(jnp.std(w0)) == pytest.approx(bound / np.sqrt(3), rel=0.05)  # U(-b, b)
    x = jax.random.normal(key, (5, 32))
    h = x
    for i in range(3):
        layer = params[f"dense_{i}"]
        h = h @ layer["kernel"] + layer["bias"]
        h = jnp.tanh(h) if i < 2 else h
    np.testing.assert_allclose(model.apply(params, x), h, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(40,), (40, 1), (8, 8, 3)])
def test_cnn_runs_on_1d_and_2d_inputs(key, shape):
    model = build_model("cnn", shape, 10, channels=[4, 8])
    out = model.apply(model.init(key), jnp.ones((2, *shape)))
    assert out.shape == (2, 10) and bool(jnp.all(jnp.isfinite(out)))


def test_registries_list_their_names_on_error():
    with pytest.raises(ConfigError, match="model.name='resnet' is not a known model: allowed cnn, mlp"):
        MODELS.get("resnet")


def quadratic():
    A = jnp.diag(jnp.array([1.0, 3.0]))
    return A, (lambda w: 0.5 * w @ A @ w)


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_minimizes_a_quadratic_with_traced_lr(name):
    _, loss = quadratic()
    # normalized GD moves a fixed distance per step, so it needs a small step to settle within 1e-2
    lr = {"adam": 0.01, "adamw": 0.01, "rmsprop": 0.01, "normalized_gd": 0.001}.get(name, 0.05)
    tx = build_optimizer(name, **{**HPARAMS, "lr": lr})

    @jax.jit
    def run(w):
        state = tx.init(w)

        def body(carry, _):
            w, state = carry
            updates, state = tx.update(jax.grad(loss)(w), state, w)
            return (optax.apply_updates(w, updates), state), None

        (w, state), _ = jax.lax.scan(body, (w, state), None, length=2000)
        return w, state

    w, state = run(jnp.array([1.0, -1.0]))
    assert float(loss(w)) < 1e-4
    assert "learning_rate" in state.hyperparams  # traced: sweepable without recompiling


def test_gd_and_heavy_ball_follow_their_update_equations():
    A, loss = quadratic()
    w0, lr, beta = jnp.array([1.0, -1.0]), 0.1, 0.9
    for name, expect in [("gd", None), ("momentum", beta)]:
        tx = build_optimizer(name, **{**HPARAMS, "lr": lr, "momentum": beta})
        w, state, m = w0, tx.init(w0), jnp.zeros(2)
        ref = w0
        for _ in range(5):
            updates, state = tx.update(jax.grad(loss)(w), state, w)
            w = optax.apply_updates(w, updates)
            g = A @ ref
            m = (beta * m + g) if expect is not None else g
            ref = ref - lr * m
        np.testing.assert_allclose(w, ref, rtol=1e-6)


def test_normalized_gd_steps_have_length_lr_and_gd_decays_weights():
    _, loss = quadratic()
    w = jnp.array([3.0, -4.0])
    tx = build_optimizer("normalized_gd", **{**HPARAMS, "lr": 0.1})
    updates, _ = tx.update(jax.grad(loss)(w), tx.init(w), w)
    g = np.array([3.0, -12.0])
    np.testing.assert_allclose(updates, -0.1 * g / np.linalg.norm(g), rtol=1e-6)
    tx = build_optimizer("gd", **{**HPARAMS, "lr": 0.1, "weight_decay": 0.5})
    updates, _ = tx.update(jax.grad(loss)(w), tx.init(w), w)
    np.testing.assert_allclose(updates, -0.1 * (g + 0.5 * np.asarray(w)), rtol=1e-6)


def test_missing_hyperparameter_is_reported():
    with pytest.raises(ConfigError, match="optimizer.b2 is missing"):
        build_optimizer("adam", lr=0.1, b1=0.9, b2=None, eps=1e-8)


@pytest.mark.parametrize("bias_correction", [False, True])
def test_rmsprop_follows_its_update_equation_with_and_without_bias_correction(bias_correction):
    A, loss = quadratic()
    w0, lr, b2, eps = jnp.array([1.0, -1.0]), 0.05, 0.9, 1e-8
    tx = build_optimizer("rmsprop", lr=lr, b2=b2, eps=eps, bias_correction=bias_correction)
    w, state = w0, tx.init(w0)
    ref, nu = np.asarray(w0, np.float64), np.zeros(2)
    for t in range(1, 6):
        g = np.asarray(A) @ ref
        nu = b2 * nu + (1 - b2) * g ** 2
        nu_hat = nu / (1 - b2 ** t) if bias_correction else nu
        ref = ref - lr * g / np.sqrt(nu_hat + eps)  # optax: eps inside the square root
        updates, state = tx.update(jax.grad(loss)(w), state, w)
        w = optax.apply_updates(w, updates)
    np.testing.assert_allclose(w, ref, rtol=1e-5)
    if bias_correction:  # the first step of the corrected one is ±lr per coordinate
        first = build_optimizer("rmsprop", lr=lr, b2=b2, eps=eps, bias_correction=True)
        step, _ = first.update(jax.grad(loss)(w0), first.init(w0), w0)
        np.testing.assert_allclose(step, -lr * np.sign(np.asarray(A) @ np.asarray(w0)), rtol=1e-5)
