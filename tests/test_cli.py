"""The command line end to end, in subprocesses: a two-point multirun and bad input."""

import json
import os
import subprocess
import sys

import pytest

from dynamics.io import load_runs


def cli(*args, cwd):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, "-m", "dynamics.run", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # make test-all; the multirun path runs in test_a_sweep_with_a_bad_and_a_diverging_point
def test_multirun_of_two_points_writes_two_run_directories(tmp_path):
    out = tmp_path / "sweep"
    proc = cli("-m", "+exp=smoke", "optimizer.lr=0.1,0.2", f"hydra.sweep.dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = load_runs(out, metrics=True)
    assert sorted(r["hparams.lr"] for r in rows) == [0.1, 0.2]
    for r in rows:
        assert r["status"] == "finished" and r["config.optimizer.lr"] == r["hparams.lr"]
        run_dir = r["run_dir"]
        assert os.path.exists(f"{run_dir}/.hydra/config.yaml")
        assert os.path.exists(f"{run_dir}/figures/loss.png")
        assert r["metrics"][-1]["step"] == 20


def test_bad_value_fails_before_compiling_with_one_line(tmp_path):
    proc = cli("+exp=smoke", "optimizer.lr=-1", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["config error: optimizer.lr=-1.0 is invalid: allowed a float > 0"]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "run" / "summary.json").exists()


def test_typo_fails_at_compose_naming_the_key(tmp_path):
    proc = cli("+exp=smoke", "optimizer.lrr=0.1", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Key 'lrr' not in 'OptimizerConfig'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_diverging_run_exits_zero_and_records_the_step(tmp_path):
    run_dir = tmp_path / "run"
    proc = cli("+exp=smoke", "optimizer.lr=50", "train.steps=200", "train.batch_size=null",
               f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged_step"] > 0


def test_a_sweep_with_a_bad_and_a_diverging_point_finishes_the_others(tmp_path):
    out = tmp_path / "sweep"
    proc = cli("-m", "+exp=smoke", "optimizer.lr=0.1,-1,1000", "train.batch_size=null",
               "train.steps=100", f"hydra.sweep.dir={out}", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr  # a point failed
    assert "config error: optimizer.lr=-1.0 is invalid" in proc.stderr
    assert f"sweep {out}: 3 runs: 1 finished, 1 diverged, 1 failed" in proc.stderr
    status = {r["config.optimizer.lr"]: r["status"] for r in load_runs(out)}
    assert status == {0.1: "finished", -1.0: "failed", 1000.0: "diverged"}
