"""Batch sharpness and the edge of stochastic stability (claim ``eos_sgd``).

- the ``batch_sharpness`` probe against dense per-batch Hessians in float64 (value, standard error);
- the claim on synthetic columns: it passes, and each check fails on its own;
- the probes the claim reads are required before anything is compiled;
- end to end at reduced size: small-batch SGD passes, the full-batch control fails on
  ``sharpness_median`` (λ_max itself reaches 2/η, as under GD).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from dynamics.claims import judge
from dynamics.curvature.batch_sharpness import batch_indices
from dynamics.data import build_dataset
from dynamics.errors import ConfigError
from dynamics.losses import LOSSES
from dynamics.models import build_model
from dynamics.optim import build_optimizer, hyperparams_of
from dynamics.probes import PROBES, ProbeContext
from dynamics.run import run
from dynamics.train import TrainState, make_step
from dynamics.validation import validate

HP = {"lr": 0.1, "momentum": 0.9, "b1": 0.9, "b2": 0.99, "eps": 1e-8, "weight_decay": 0.0}
N, B, M = 12, 4, 7


def setup(batch_size=B):
    data = build_dataset("synthetic", jax.random.key(0), n_train=N, n_test=4, dim=3, num_classes=3,
                         dtype=jnp.float64)
    net = build_model("mlp", (3,), 3, widths=[5], activation="tanh")
    params = jax.tree.map(lambda p: p.astype(jnp.float64), net.init(jax.random.key(1)))
    loss = LOSSES.get("mse")
    tx = build_optimizer("gd", **HP)
    step = make_step(net.apply, loss, tx, batch_size=batch_size, classification=True)
    state = TrainState(jnp.asarray(0), params, tx.init(params), jax.random.key(2))
    for _ in range(3):
        state = step(state, data.x_train, data.y_train)[0]
    ctx = ProbeContext(net.apply, loss, data, "gd", hyperparams_of("gd", HP), step, batch_size)
    return ctx, state, data


def dense_ratios(ctx, params, data, idx):
    """gᵀH g/‖g‖² of each batch in ``idx`` from the dense batch Hessian (jax.hessian), one compiled
    function with the batch as its argument (no retracing per batch)."""
    flat, unravel = ravel_pytree(params)

    @jax.jit
    def ratio(w, x, y):
        def loss(v):
            return ctx.loss(ctx.apply_fn(unravel(v), x), y)

        g = jax.grad(loss)(w)
        return g @ jax.hessian(loss)(w) @ g / (g @ g)

    return np.array([float(ratio(flat, data.x_train[row], data.y_train[row]))
                     for row in np.asarray(idx)])


def test_probe_matches_dense_per_batch_hessians_with_its_standard_error():
    with jax.enable_x64(True):
        ctx, state, data = setup()
        probe = PROBES.get("batch_sharpness")(ctx, state.params, jax.random.key(3), every=10,
                                              num_batches=M)
        key = jax.random.key(4)
        metrics = jax.device_get(probe.measure(state, probe.init_state, key)[0])
        values = dense_ratios(ctx, state.params, data, batch_indices(key, N, B, M))
        assert float(metrics["batch_sharpness"]) == pytest.approx(values.mean(), rel=1e-10)
        assert float(metrics["batch_sharpness_se"]) == pytest.approx(
            np.std(values, ddof=1) / np.sqrt(M), rel=1e-8)
        assert float(metrics["batch_sharpness_se"]) > 0
        # an explicit probes.batch_sharpness.batch_size overrides the training batch size
        probe6 = PROBES.get("batch_sharpness")(ctx, state.params, jax.random.key(3), every=10,
                                               num_batches=M, batch_size=6)
        got = jax.device_get(probe6.measure(state, probe6.init_state, key)[0])
        want = dense_ratios(ctx, state.params, data, batch_indices(key, N, 6, M)).mean()
        assert float(got["batch_sharpness"]) == pytest.approx(want, rel=1e-10)


def test_full_batch_probe_is_the_rayleigh_quotient_along_the_gradient_with_zero_error():
    with jax.enable_x64(True):
        ctx, state, data = setup(batch_size=None)
        probe = PROBES.get("batch_sharpness")(ctx, state.params, jax.random.key(3), every=10)
        metrics = jax.device_get(probe.measure(state, probe.init_state, jax.random.key(5))[0])
        want = dense_ratios(ctx, state.params, data, np.arange(N)[None])[0]
        assert float(metrics["batch_sharpness"]) == pytest.approx(want, rel=1e-10)
        assert float(metrics["batch_sharpness_se"]) == 0.0
        flat, unravel = ravel_pytree(state.params)
        H = jax.jit(jax.hessian(lambda w: ctx.loss(ctx.apply_fn(unravel(w), data.x_train),
                                                   data.y_train)))(flat)
        assert want <= np.linalg.eigvalsh(np.asarray(H))[-1] * (1 + 1e-12)  # BS ≤ λ_max


def test_probe_options_fail_with_the_allowed_values():
    with jax.enable_x64(True):
        ctx, state, _ = setup()
    with pytest.raises(ConfigError, match="probes.batch_sharpness.batch_size=99 is invalid"):
        PROBES.get("batch_sharpness")(ctx, state.params, jax.random.key(0), every=10, batch_size=99)
    with pytest.raises(ConfigError, match="probes.batch_sharpness.num_batches=1 is invalid"):
        PROBES.get("batch_sharpness")(ctx, state.params, jax.random.key(0), every=10, num_batches=1)


LR = 0.4  # 2/η = 5


def columns(bs_ratio, lam_ratio):
    """Logged columns with batch sharpness and λ_max given as fractions of 2/η."""
    bs, lam = np.asarray(bs_ratio, float), np.asarray(lam_ratio, float)
    steps = np.arange(bs.size) * 100.0
    return {"step": steps, "loss": np.linspace(2, 0.3, bs.size), "batch_sharpness": bs * 2 / LR,
            "batch_sharpness_se": 0.02 * bs * 2 / LR, "sharpness": lam * 2 / LR}


RISE = np.linspace(0.3, 0.85, 10)
CONTEXT = {"optimizer": "gd", "hparams": {"learning_rate": LR}}


def verdict_of(bs, lam, context=CONTEXT, **criteria):
    c = columns(bs, lam)
    return judge("eos_sgd", [dict(zip(c, row)) for row in zip(*c.values())], context, criteria)


def hover(level, n=30, amplitude=0.08):
    return level + amplitude * np.sin(np.arange(n))


def test_claim_passes_on_a_rise_to_the_edge_with_lambda_max_below():
    lam = np.r_[np.linspace(0.3, 0.45, 10), hover(0.42, 30, 0.02)]
    v = verdict_of(np.r_[RISE, hover(0.95)], lam)
    assert v["passed"] is True, v["failed"]
    assert v["arrival_step"] == 1000 and v["threshold"] == pytest.approx(5.0)
    assert v["bs_median"] == pytest.approx(0.95, abs=0.03)
    assert v["bs_over_sharpness"] > 2
    assert {c["source"] for c in v["checks"].values()} == {"pre-registered", "calibrated"}


@pytest.mark.parametrize("bs,lam,failing", [
    (np.r_[RISE, hover(0.7, 30, 0.05)], np.full(40, 0.3), "reached_threshold"),  # never arrives
    (np.r_[RISE, hover(1.25)], np.full(40, 0.4), "bs_median"),  # hovers above the band
    (np.r_[RISE, hover(1.0, 30, 0.01)], np.full(40, 1.003), "sharpness_median"),  # full batch: GD
    (np.r_[RISE, hover(0.82, 30, 0.2)], np.full(40, 0.88), "bs_over_sharpness"),  # λ_max above BS
], ids=["never_reaches", "above_band", "lambda_max_at_edge", "lambda_max_above_bs"])
def test_each_check_fails_on_its_own(bs, lam, failing):
    v = verdict_of(bs, lam)
    assert v["passed"] is False
    assert any(f.startswith(failing) for f in v["failed"]), v["failed"]
    # alone, except where the bands imply it (λ_max above BS needs BS below the band or λ_max above 0.9)
    assert len(v["failed"]) == 1 or failing in ("sharpness_median", "bs_over_sharpness"), v["failed"]


def test_claim_fails_without_its_columns_or_for_another_optimizer():
    rows = [{"step": 0, "loss": 1.0, "sharpness": 1.0}]
    v = judge("eos_sgd", rows, CONTEXT, {})
    assert v["passed"] is False and v["failed"] == ["missing column batch_sharpness"]
    v = verdict_of(np.r_[RISE, hover(0.95)], np.full(40, 0.4),
                   {"optimizer": "adam", "hparams": {"learning_rate": LR}})
    assert v["passed"] is False and v["failed"][0].startswith("optimizer is not true")


@pytest.mark.parametrize("probe", ["batch_sharpness", "sharpness"])
def test_claim_requires_both_probes_before_compiling(compose, probe):
    with pytest.raises(ConfigError, match=rf"^probes.{probe}.every=0 is invalid: .*reads {probe}"):
        validate(compose("+exp=eos_sgd", f"probes.{probe}.every=0"))


# n = 256 with batch 16 (the default 32 of n = 1,000 is too large a fraction of 256: 1.14-1.17·2/η)
REDUCED = ["+exp=eos_sgd", "data.n_train=256", "train.batch_size=16", "model.widths=[32,32]",
           "train.steps=3000",
           "claim.seeds=2", "probes.sharpness.every=250", "probes.batch_sharpness.every=250",
           "probes.batch_sharpness.num_batches=32", "train.chunk=250"]


def test_reduced_claim_passes_with_small_batches(compose, tmp_path):
    summary = run(compose(*REDUCED), tmp_path)
    v = summary["verdict"]
    assert v["passed"] is True, v["failed"]
    assert (tmp_path / "figures" / "batch_sharpness_ratio.png").exists()


def test_reduced_full_batch_control_fails_on_sharpness_median(compose, tmp_path):
    v = run(compose(*REDUCED, "train.batch_size=null"), tmp_path)["verdict"]
    assert v["passed"] is False
    assert all("sharpness_median" in "; ".join(s["failed"]) for s in v["per_seed"]), v["failed"]


@pytest.mark.slow
def test_full_size_claim_passes(compose, tmp_path):
    summary = run(compose("+exp=eos_sgd"), tmp_path)
    assert summary["verdict"]["passed"] is True, summary["verdict"]["failed"]


@pytest.mark.slow
@pytest.mark.parametrize("control,failing", [(["train.batch_size=null"], "sharpness_median"),
                                             (["optimizer.lr=0.1"], "reached_threshold")],
                         ids=["full_batch", "eta_below_band"])
def test_full_size_controls_fail(compose, tmp_path, control, failing):
    bad = run(compose("+exp=eos_sgd", *control), tmp_path)["verdict"]
    assert bad["passed"] is False
    assert all(failing in "; ".join(s["failed"]) for s in bad["per_seed"]), bad["failed"]
