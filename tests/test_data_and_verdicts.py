"""Data sets (generated locally, deterministic subsets, local CIFAR-10) and the EoS verdict."""

import pickle

import numpy as np
import pytest

from dynamics.data import build_dataset
from dynamics.errors import ConfigError
from dynamics.claims import judge, stability_threshold


def test_synthetic_is_deterministic_and_subsets_are_prefixes(key):
    a = build_dataset("synthetic", key, n_train=100, n_test=10)
    b = build_dataset("synthetic", key, n_train=100, n_test=10)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_train, b.y_train)
    assert a.x_train.shape == (100, 32) and a.num_classes == 4 and set(np.unique(a.y_train)) <= {0, 1, 2, 3}
    assert len(np.unique(a.y_train)) > 1


def test_mnist1d_generated_locally_with_class_subsets(key):
    d = build_dataset("mnist1d", key)
    assert d.x_train.shape == (4000, 40) and d.x_test.shape == (1000, 40) and d.num_classes == 10
    src = build_dataset("mnist1d", key, classes=[5, 7], n_train=50)
    assert src.num_classes == 2 and src.x_train.shape == (50, 40)
    full = np.asarray(d.y_train)
    kept = np.asarray(d.x_train)[np.isin(full, [5, 7])][:50]
    np.testing.assert_array_equal(src.x_train, kept)
    np.testing.assert_array_equal(src.y_train, (full[np.isin(full, [5, 7])][:50] == 7).astype(int))


def test_n_train_larger_than_the_data_is_a_config_error(key):
    with pytest.raises(ConfigError, match=r"^data.n_train=5000 is invalid: allowed 1..4000"):
        build_dataset("mnist1d", key, n_train=5000)


def test_cifar10_reads_a_local_copy_and_explains_when_absent(tmp_path, key):
    with pytest.raises(ConfigError, match="data.path=None is invalid.*cifar-10-batches-py"):
        build_dataset("cifar10", key, path=None)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                 b"labels": list(rng.integers(0, 10, 4))}
        (tmp_path / name).write_bytes(pickle.dumps(batch))
    d = build_dataset("cifar10", key, path=str(tmp_path), n_train=12, n_test=3)
    assert d.x_train.shape == (12, 32, 32, 3) and d.x_test.shape == (3, 32, 32, 3)
    first = pickle.loads((tmp_path / "data_batch_1").read_bytes())
    assert list(np.asarray(d.y_train[:4])) == list(first[b"labels"])
    # standardised per pixel-feature with the training statistics (all 20 training images)
    raw = np.concatenate([pickle.loads((tmp_path / n).read_bytes())[b"data"] for n in names[:5]])
    raw = raw.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1) / 255.0
    np.testing.assert_allclose(d.x_train, ((raw - raw.mean(0)) / raw.std(0))[:12], rtol=1e-4,
                               atol=1e-4)


def test_thresholds():
    assert stability_threshold("gd", {"learning_rate": 0.25}) == 8.0
    assert stability_threshold("momentum", {"learning_rate": 0.1, "momentum": 0.9}) == pytest.approx(38.0)


def eos_rows(threshold=4.0, cross=50, n=200, wobble=0.04):
    """Sharpness rises linearly to the threshold at `cross`, then alternates ±wobble around 1.02×."""
    rows = []
    for t in range(n):
        if t < cross:
            s, loss = threshold * (0.5 + 0.5 * t / cross), 1.0 - 0.01 * t
        else:
            s = threshold * (1.02 + (wobble if t % 2 else -wobble))
            loss = 0.5 - 0.001 * t + (0.05 if t % 2 else 0.0)
        rows.append({"step": t, "loss": loss, "sharpness": s})
    return rows


def test_eos_verdict_numbers_match_a_constructed_trajectory():
    v = judge("eos", eos_rows(), {"optimizer": "gd", "hparams": {"learning_rate": 0.5}}, {})
    assert v["crossing_step"] == 51  # first step with sharpness >= 2/η (t = 50 sits just below)
    assert v["ratio_median"] == pytest.approx(1.02, abs=0.041)
    assert v["ratio_p95"] == pytest.approx(1.06) and v["ratio_p05"] == pytest.approx(0.98)
    assert v["loss_rise_before"] == 0.0
    assert v["loss_rise_after"] == pytest.approx(74 / 148)  # every step into an odd t > 51
    assert v["passed"] is True and v["failed"] == []
    assert all(c["passed"] for c in v["checks"].values())


def test_eos_verdict_fails_when_the_claim_does_not_hold():
    ctx = {"optimizer": "gd", "hparams": {"learning_rate": 0.5}}
    never = [{"step": t, "loss": 1.0 - 0.001 * t, "sharpness": 2.0} for t in range(100)]
    never_v = judge("eos", never, ctx, {})
    assert never_v["passed"] is False and never_v["crossing_step"] is None
    assert never_v["failed"] == [
        "reached_threshold 0.5 < 1 (sharpness never reached 2/η within the run)"]
    assert never_v["checks"]["reached_threshold"]["note"] == "sharpness never reached 2/η within the run"
    far_above = judge("eos", eos_rows(wobble=0.3), ctx, {})
    assert far_above["passed"] is False and far_above["checks"]["ratio_p95"]["passed"] is False
    assert f"ratio_p95 {far_above['ratio_p95']:.4g} >= 1.25" in far_above["failed"]
    late = judge("eos", eos_rows(), ctx, {"expected_crossing": 200})
    assert late["passed"] is False and late["checks"]["crossing_step"]["passed"] is False


def test_eos_flow_verdict_on_a_constructed_normalized_gd_run():
    """Normalized GD: threshold 2‖g‖/η per row; sharpness tracks it from t = 10 and falls 0.03 a step."""
    lr, rows = 0.1, []
    for t in range(0, 101):
        s = 2.0 + 0.4 * t if t < 10 else 6.0 - 0.03 * (t - 10)
        ratio = 1.01 if t >= 10 else 1 / 3  # sharpness / (2‖g‖/η)
        grad_norm = s * lr / (2 * ratio)
        rows.append({"step": t, "loss": 1.0 / (t + 1), "grad_norm": grad_norm, "sharpness": s})
    ctx = {"optimizer": "normalized_gd", "hparams": {"learning_rate": lr}}
    v = judge("eos_flow", rows, ctx, {})
    assert v["crossing_step"] == 10
    assert v["ratio_median"] == pytest.approx(1.01)
    # 91 measurements from t = 10; quarters of 22: medians at t = 20.5 and t = 89.5
    assert v["early_median"] == pytest.approx(6.0 - 0.03 * 10.5)
    assert v["late_median"] == pytest.approx(6.0 - 0.03 * 79.5)
    assert v["reduction"] == pytest.approx(1 - (6.0 - 0.03 * 79.5) / (6.0 - 0.03 * 10.5))
    assert v["passed"] is True
    # control: the threshold's metric hovers but never falls (an overshoot alone is no reduction)
    flat = [{**r, "sharpness": 8.0 if r["step"] == 12 else r["sharpness"] if r["step"] < 10 else 6.0,
             "grad_norm": 6.0 * lr / 2.02 if r["step"] >= 10 else r["grad_norm"]} for r in rows]
    v = judge("eos_flow", flat, ctx, {})
    assert v["passed"] is False and v["failed"] == ["reduction 0 < 0.1"]


def test_spherical_eos_verdict_on_a_constructed_run():
    rows = []
    for t in range(0, 200):
        product = 0.5 + 0.05 * t if t < 30 else 2.0 + (0.1 if t % 2 else -0.1)
        spherical = 100.0 if t < 50 else 100.0 - 0.3 * (t - 50)
        rows.append({"step": t, "loss": 1.0, "spherical_sharpness": spherical,
                     "spherical_sharpness_x_eta_eff": product})
    v = judge("spherical_eos", rows, {"optimizer": "gd", "hparams": {}}, {})
    assert v["settle_step"] == 26  # first product >= 1.8: 0.5 + 0.05 t >= 1.8
    assert v["product_median"] == pytest.approx(2.0, abs=0.1)
    # 174 measurements from t = 26; quarters of 43: medians at t = 47 (100) and t = 178 (100 − 0.3·128)
    assert v["early_median"] == pytest.approx(100.0) and v["late_median"] == pytest.approx(61.6)
    assert v["reduction"] == pytest.approx(0.384)
    assert v["passed"] is True
    high = [{**r, "spherical_sharpness_x_eta_eff": 3 * r["spherical_sharpness_x_eta_eff"]}
            for r in rows]
    assert judge("spherical_eos", high, {"optimizer": "gd", "hparams": {}}, {})["passed"] is False
