"""The trainer against a hand-written optax loop; divergence; determinism; run outputs."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dynamics.io import load_runs, read_metrics
from dynamics.run import run


def small(compose, *overrides):
    return compose("+exp=smoke", "train.batch_size=null", *overrides)


def test_full_batch_gd_matches_a_plain_optax_loop(compose, tmp_path):
    from dynamics.data import build_dataset
    from dynamics.losses import mse
    from dynamics.models import build_model
    from dynamics.train import rng_streams

    cfg = small(compose, "probes.sharpness.every=0", "probes.eval.every=0", "train.steps=12", "train.chunk=4", "optimizer.lr=0.3")
    summary = run(cfg, tmp_path)
    assert summary["status"] == "finished" and summary["hparams"]["lr"] == 0.3
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == list(range(13))

    streams = rng_streams(cfg.seed)
    data = build_dataset("synthetic", streams["data"], n_train=64, n_test=64, dim=8,
                         num_classes=4, teacher_width=64)
    model = build_model("mlp", data.input_shape, 4, widths=[16])
    params = model.init(streams["init"])
    tx = optax.sgd(0.3)
    state = tx.init(params)
    for t in range(12):
        value, grads = jax.value_and_grad(lambda p: mse(model.apply(p, data.x_train), data.y_train))(params)
        assert rows[t]["loss"] == pytest.approx(float(value), rel=1e-5)
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    final = float(mse(model.apply(params, data.x_train), data.y_train))
    assert rows[-1]["loss"] == pytest.approx(final, rel=1e-5)


def test_same_seed_same_metrics_other_seed_differs(compose, tmp_path):
    out = []
    for i, seed in enumerate([3, 3, 4]):
        run(compose("+exp=smoke", f"seed={seed}"), tmp_path / str(i))
        out.append(read_metrics(tmp_path / str(i)))
    assert out[0] == out[1]
    assert out[0] != out[2]


def test_divergence_is_recorded_with_its_step_and_metrics_kept(compose, tmp_path):
    cfg = small(compose, "optimizer.lr=50", "train.steps=200", "train.chunk=10", "probes.sharpness.every=0", "probes.eval.every=0")
    summary = run(cfg, tmp_path)
    assert summary["status"] == "diverged"
    step = summary["diverged_step"]
    rows = read_metrics(tmp_path)
    assert 0 < step < 200 and rows[-1]["step"] == step and rows[-1]["loss"] is None
    assert all(math.isfinite(r["loss"]) for r in rows[:-1]) and len(rows) == step + 1
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "diverged"


def test_minibatch_sgd_uses_batches_of_the_given_size(compose, tmp_path):
    from dynamics.data import sample_batch

    idx = sample_batch(jax.random.key(0), jnp.asarray(5), 64, 16)
    assert len(np.unique(np.asarray(idx))) == 16
    again = sample_batch(jax.random.key(0), jnp.asarray(5), 64, 16)
    assert np.array_equal(idx, again)
    summary = run(compose("+exp=smoke"), tmp_path)
    assert summary["status"] == "finished" and summary["hparams"]["batch_size"] == 16


def test_sampling_with_replacement_draws_uniform_independent_indices():
    from dynamics.data import BATCH_SAMPLERS

    draw = jax.jit(jax.vmap(BATCH_SAMPLERS.get("with_replacement"), in_axes=(None, 0, None, None)),
                   static_argnums=(2, 3))
    idx = np.asarray(draw(jax.random.key(0), jnp.arange(4000), 10, 5))  # 20,000 draws of 0..9
    counts = np.bincount(idx.ravel(), minlength=10)
    # multinomial(20000, 1/10): sd of a count = sqrt(20000 * 0.1 * 0.9) = 42.4; 5 sd = 212
    assert np.abs(counts - 2000).max() < 212
    # repeats within a batch of 5 from 10: P(all distinct) = 10*9*8*7*6 / 10^5 = 0.3024 (sd 0.0073)
    distinct = np.mean([len(set(row)) == 5 for row in idx])
    assert abs(distinct - 0.3024) < 0.03
    same = np.asarray(draw(jax.random.key(0), jnp.arange(4000), 10, 5))
    assert np.array_equal(idx, same)


def test_sampling_and_data_seed_reach_the_run(compose, tmp_path):
    base = ("+exp=smoke", "train.steps=10", "probes.sharpness.every=0")
    run(compose(*base, "train.sampling=with_replacement"), tmp_path / "a")
    run(compose(*base), tmp_path / "b")
    a, b = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    assert a[0]["loss"] != b[0]["loss"]  # other batches at step 0 (same init)
    # data.seed fixes the data while seed changes init and batches
    from dynamics.tasks.train import build_point

    p0, p1 = (build_point(compose(*base, f"seed={s}", "data.seed=7")) for s in (0, 1))
    assert np.array_equal(p0.dataset.x_test, p1.dataset.x_test)
    assert not np.array_equal(jax.tree.leaves(p0.state.params)[0], jax.tree.leaves(p1.state.params)[0])
    q = build_point(compose(*base, "seed=0"))
    assert not np.array_equal(p0.dataset.x_test, q.dataset.x_test)


def test_run_outputs_and_load_runs(compose, tmp_path):
    run(compose("+exp=smoke"), tmp_path / "a")
    run(compose("+exp=smoke", "optimizer.lr=0.05"), tmp_path / "b")
    for d in ("a", "b"):
        assert (tmp_path / d / "metrics.jsonl").exists()
        assert (tmp_path / d / "figures" / "loss.png").exists()
        assert (tmp_path / d / "figures" / "sharpness.png").exists()
    rows = load_runs(tmp_path, metrics=True)
    assert sorted(r["hparams.lr"] for r in rows) == [0.05, 0.1]
    assert all(r["status"] == "finished" and r["metrics"][0]["step"] == 0 for r in rows)
    assert "sharpness" in rows[0]["metrics"][0] and "test_loss" in rows[0]["metrics"][0]


def test_float64_runs_in_double_precision(compose, tmp_path):
    summary = run(compose("+exp=smoke", "precision=float64", "train.steps=5"), tmp_path)
    jax.config.update("jax_enable_x64", False)
    assert summary["status"] == "finished"
