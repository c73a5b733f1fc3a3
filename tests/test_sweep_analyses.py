"""The cross-run analyses of experiments/svag and experiments/sqrt_scaling: their estimator against a
simulated ensemble with a known answer, and a tiny vmapped multi-seed sweep through each script."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from dynamics.run import run

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_analyze",
                                                  ROOT / "experiments" / name / "analyze.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_svag_distance_is_unbiased_for_correlated_seed_pairs():
    """Seed i gives the runs at ℓ and 2ℓ a shared init component; the estimate of the squared distance
    between the expected curves must be unbiased anyway, the uncorrected one is not, and the jackknife
    standard error must match the spread of the estimates."""
    svag = load_script("svag")
    rng = np.random.default_rng(0)
    reps, seeds, points = 2000, 16, 10
    mu_a = np.linspace(0.0, 0.02, points)
    mu_b = np.zeros(points)
    truth = float(np.mean((mu_a - mu_b) ** 2))  # 1.27e-4
    shared = rng.normal(0, 0.03, (reps, seeds, points))  # the init, common to both runs of a seed
    a = mu_a + shared + rng.normal(0, 0.02, (reps, seeds, points))
    b = mu_b + shared + rng.normal(0, 0.02, (reps, seeds, points))
    est = np.array([svag.squared_distance(x, y) for x, y in zip(a, b)])
    naive = np.mean((a.mean(1) - b.mean(1)) ** 2, axis=1)
    # noise of the paired mean: var(D)/S = 2·0.02²/16 = 5e-5 per point, the naive estimate's bias
    assert abs(est.mean() - truth) < 4 * est.std() / np.sqrt(reps)
    assert naive.mean() - truth == pytest.approx(5e-5, rel=0.1)
    se = np.array([svag.distance(x, y)["d2_se"] for x, y in zip(a[:300], b[:300])])
    assert np.median(se) == pytest.approx(est.std(), rel=0.25)


@pytest.fixture
def tiny(compose):
    def make(exp, *overrides):
        return compose(f"+exp={exp}", "data.n_train=256", "data.n_test=64", "vmap.seed=[0,1,2]",
                       "probes.eval.every=10", *overrides)
    return make


def test_svag_analysis_of_a_tiny_three_seed_ladder(tiny, tmp_path):
    for i, l in enumerate((1, 2)):
        summary = run(tiny("svag", "train.steps=10", f"oracle.svag_l={l}"), tmp_path / str(i))
        assert [p["seed"] for p in summary["vmap_points"]] == [0, 1, 2]
    out = load_script("svag").analyze([tmp_path])
    gaps = out["gaps"]["adam"]
    assert gaps["n_seeds"] == 3 and gaps["l_pairs"] == [[1.0, 2.0]]
    for metric in ("train_loss", "test_accuracy", "test_loss"):
        (detail,) = gaps[f"{metric}_detail"]
        assert detail["d"] == pytest.approx(np.sqrt(max(detail["d2"], 0.0)))
        assert detail["raw"] >= 0 and detail["d2_se"] >= 0
    assert "passed" in out["verdict"] and (tmp_path / "svag.png").exists()
    assert json.loads((tmp_path / "sweep_summary.json").read_text())["passed"] == out["passed"]


def test_sqrt_scaling_analysis_compares_seed_means(tiny, tmp_path):
    points = [("sqrt", 1.0), ("sqrt", 0.25), ("linear", 0.25)]
    for i, (rule, kappa) in enumerate(points):
        run(tiny("sqrt_scaling", "train.steps=20", f"scaling.rule={rule}", f"scaling.kappa={kappa}"),
            tmp_path / str(i))
    out = load_script("sqrt_scaling").analyze([tmp_path])
    assert out["seeds"] == {"adam": 3} and out["seed_floor"]["adam"] >= 0
    assert {(g["rule"], g["kappa"]) for g in out["gaps"]} == {("sqrt", 0.25), ("linear", 0.25)}
    assert set(out["verdict"]["checks"]) == {"adam_sqrt_within_tol", "adam_linear_departs"}
    # the applied hyperparameters reach the runs: batch 16 and 4x the steps at kappa = 1/4
    scaled = [r for r in out["runs"] if r["kappa"] == 0.25]
    assert {r["batch_size"] for r in scaled} == {16} and {r["steps"] for r in scaled} == {80}
