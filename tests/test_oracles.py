"""Gradient oracles (batch, label noise, SVAG) and the scaling/SVAG hyperparameter hooks."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynamics.data import sample_batch
from dynamics.errors import ConfigError
from dynamics.losses import mse
from dynamics.run import run
from dynamics.svag import svag_weights
from dynamics.train.oracles import build_oracle
from dynamics.train.step import make_objective


def linear_problem():
    x = jax.random.normal(jax.random.key(0), (32, 3))
    y = jax.random.normal(jax.random.key(1), (32, 2))
    w = jax.random.normal(jax.random.key(2), (3, 2))
    objective = make_objective(lambda p, x: x @ p, mse)
    return objective, w, x, y


def grad_on(objective, w, x, y):
    return jax.grad(lambda p: objective(p, x, y)[0])(w)


def test_label_noise_adds_fresh_gaussian_noise_to_the_targets():
    objective, w, x, y = linear_problem()
    oracle = build_oracle("label_noise", objective, batch_size=None, label_noise_std=0.5)
    key = jax.random.key(7)
    value, _, labels, g = oracle(w, x, y, key, jnp.asarray(3))
    xi = jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, 1), 3), y.shape)
    np.testing.assert_allclose(g, grad_on(objective, w, x, y + 0.5 * xi), rtol=1e-5)
    np.testing.assert_array_equal(labels, y)
    # unbiased: averaged over many steps the gradient is the clean one (MSE is linear in y)
    grads = jax.vmap(lambda t: oracle(w, x, y, key, t)[3])(jnp.arange(4000))
    clean = grad_on(objective, w, x, y)
    spread = np.std(np.asarray(grads), axis=0) / np.sqrt(4000)
    assert np.all(np.abs(np.mean(np.asarray(grads), axis=0) - clean) < 5 * spread)


@pytest.mark.parametrize("adaptive", [False, True])
def test_svag_combines_two_independent_batches(adaptive):
    objective, w, x, y = linear_problem()
    oracle = build_oracle("svag", objective, batch_size=8, svag_l=4.0, adaptive=adaptive)
    key, t = jax.random.key(3), 5
    _, _, _, g = oracle(w, x, y, key, jnp.asarray(t))
    i1 = sample_batch(key, jnp.asarray(2 * t), 32, 8)
    i2 = sample_batch(key, jnp.asarray(2 * t + 1), 32, 8)
    r1, r2 = svag_weights(4.0, adaptive=adaptive)
    want = r1 * grad_on(objective, w, x[i1], y[i1]) + r2 * grad_on(objective, w, x[i2], y[i2])
    np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-6)
    assert r1 + r2 == pytest.approx(1.0)
    assert r1**2 + r2**2 == pytest.approx(16.0 if adaptive else 4.0)


def test_svag_needs_minibatches():
    objective, *_ = linear_problem()
    with pytest.raises(ConfigError, match="train.batch_size=None is invalid with oracle.name=svag"):
        build_oracle("svag", objective, batch_size=None, svag_l=2.0, adaptive=False)


def test_sqrt_scaling_hook_writes_the_applied_values(compose, tmp_path):
    cfg = compose("+exp=smoke", "optimizer=adam", "optimizer.lr=0.01", "optimizer.b1=0.9",
                  "optimizer.b2=0.99", "optimizer.eps=1e-8", "train.batch_size=8",
                  "scaling.rule=sqrt", "scaling.kappa=4", "train.steps=40", "train.chunk=5")
    summary = run(cfg, tmp_path)
    scaled = json.loads((tmp_path / "summary.json").read_text())["scaling"]["scaled"]
    assert scaled["lr"] == pytest.approx(0.02) and scaled["batch_size"] == 32
    assert scaled["b1"] == pytest.approx(0.6) and scaled["b2"] == pytest.approx(0.96)
    assert scaled["eps"] == pytest.approx(0.5e-8)
    assert summary["hparams"]["steps"] == 10 and summary["hparams"]["learning_rate"] == 0.02
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 10 and rows[-1]["time"] == pytest.approx(10 * 0.02**2)


def test_svag_hook_rescales_lr_and_steps(compose, tmp_path):
    cfg = compose("+exp=smoke", "oracle.name=svag", "oracle.svag_l=2", "train.steps=20",
                  "train.chunk=5")
    summary = run(cfg, tmp_path)
    assert summary["status"] == "finished"
    assert summary["hparams"]["lr"] == pytest.approx(0.05) and summary["hparams"]["steps"] == 40
    assert summary["svag"]["l"] == 2.0
