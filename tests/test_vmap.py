"""Vmapped sweeps give the per-point runs' metrics and outputs; a diverging point is masked."""

import json
from pathlib import Path

import numpy as np
import pytest

from dynamics.errors import ConfigError
from dynamics.io import load_runs, read_metrics
from dynamics.run import run

SMOKE = ["+exp=smoke", "train.steps=30", "train.chunk=10"]


def test_vmapped_grid_matches_sequential_runs(compose, tmp_path):
    summary = run(compose(*SMOKE, "vmap.lr=[0.05,0.2]", "vmap.seed=[0,3]"), tmp_path / "vmap")
    assert [(p["lr"], p["seed"]) for p in summary["vmap_points"]] == [
        (0.05, 0), (0.05, 3), (0.2, 0), (0.2, 3)]
    rows = load_runs(tmp_path / "vmap", metrics=True)
    assert len(rows) == 4  # the parent directory is not a run
    for row in rows:
        lr, seed = row["config.optimizer.lr"], row["config.seed"]
        assert row["hparams.lr"] == lr and row["hparams.seed"] == seed
        single = tmp_path / f"single_{lr}_{seed}"
        run(compose(*SMOKE, f"optimizer.lr={lr}", f"seed={seed}"), single)
        want = read_metrics(single)
        got = row["metrics"]
        assert [r["step"] for r in got] == [r["step"] for r in want]
        for key in ("loss", "accuracy", "sharpness", "test_loss", "time"):
            a = np.array([r[key] for r in got if key in r], float)
            b = np.array([r[key] for r in want if key in r], float)
            assert a.shape == b.shape and a.size > 0
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)
        point_dir = row["run_dir"]
        assert json.loads(Path(point_dir, "summary.json").read_text())["status"] == "finished"


def test_a_diverging_point_is_masked_and_the_others_finish(compose, tmp_path):
    summary = run(compose(*SMOKE, "train.batch_size=null", "train.steps=200",
                          "probes.sharpness.every=0", "vmap.lr=[0.1,50.0]"), tmp_path)
    assert [p["status"] for p in summary["vmap_points"]] == ["finished", "diverged"]
    good, bad = (json.loads((tmp_path / "points" / str(i) / "summary.json").read_text())
                 for i in range(2))
    assert good["steps_completed"] == 200 and bad["diverged_step"] < 200
    rows = read_metrics(tmp_path / "points" / "1")
    assert rows[-1]["step"] == bad["diverged_step"] and rows[-1]["loss"] is None
    assert len(read_metrics(tmp_path / "points" / "0")) == 201


def test_a_diverged_lane_leaves_the_healthy_points_unchanged(compose, tmp_path):
    """With the sharpness probe on: the diverged lane is held at its last finite state (its probes run
    on finite parameters), the healthy points' outputs equal those of an all-healthy sweep, and the
    diverged point records the step it diverged at as its steps_completed."""
    base = [*SMOKE, "train.batch_size=null", "train.steps=60", "probes.eval.every=0"]
    mixed = run(compose(*base, "vmap.lr=[0.1,50.0,0.2]"), tmp_path / "mixed")
    healthy = run(compose(*base, "vmap.lr=[0.1,0.15,0.2]"), tmp_path / "healthy")
    assert [p["status"] for p in mixed["vmap_points"]] == ["finished", "diverged", "finished"]
    assert [p["status"] for p in healthy["vmap_points"]] == ["finished"] * 3
    assert not (tmp_path / "mixed" / "metrics.jsonl").exists()  # the parent's rows are its points'
    for i in (0, 2):
        assert (tmp_path / "mixed" / "points" / str(i) / "metrics.jsonl").read_bytes() == (
            tmp_path / "healthy" / "points" / str(i) / "metrics.jsonl").read_bytes()
    bad = json.loads((tmp_path / "mixed" / "points" / "1" / "summary.json").read_text())
    assert bad["steps_completed"] == bad["diverged_step"] < 10
    assert read_metrics(tmp_path / "mixed" / "points" / "1")[-1]["step"] == bad["diverged_step"]


def test_vmap_refuses_resume(compose, tmp_path):
    from dynamics.validation import validate

    with pytest.raises(ConfigError, match="^resume=True is invalid"):
        validate(compose(*SMOKE, "vmap.lr=[0.1,0.2]", "resume=true"))
