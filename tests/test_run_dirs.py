"""Run directories that never lie: unique default directories, a lock, a status that is always written
(running → finished | diverged | failed | interrupted), an earlier run moved aside, verified checkpoints
with fallback, and resume that says what it did."""

import json
import logging
import os
import signal
import subprocess
import sys

import pytest

from dynamics.io import RunDirInUse, load_runs, lock_run_dir, read_metrics
from dynamics.run import run

SMOKE = ["+exp=smoke", "train.steps=60", "train.chunk=5", "checkpoint.every=10"]


def summary(path):
    return json.loads((path / "summary.json").read_text())


def test_two_concurrent_default_directory_runs_give_two_complete_directories(tmp_path):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "dynamics.run", "+exp=smoke", f"seed={s}"],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for s in (0, 1)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    rows = load_runs(tmp_path / "outputs", metrics=True)
    assert len({r["run_dir"] for r in rows}) == 2
    assert sorted(r["config.seed"] for r in rows) == [0, 1]
    for r in rows:
        assert r["status"] == "finished" and r["hparams.seed"] == r["config.seed"]
        assert [m["step"] for m in r["metrics"]] == list(range(21))


def test_a_second_run_into_a_directory_in_use_refuses(compose, tmp_path):
    held = lock_run_dir(tmp_path)
    try:
        with pytest.raises(RunDirInUse, match="is in use by pid"):
            run(compose("+exp=smoke"), tmp_path)
    finally:
        held.close()
    assert not (tmp_path / "summary.json").exists()
    assert [r["status"] for r in load_runs(tmp_path)] == []


def test_sigint_in_a_directory_that_held_a_finished_run(compose, tmp_path, interrupt_at):
    first = run(compose("+exp=smoke"), tmp_path)
    assert first["status"] == "finished"
    interrupt_at(30)
    with pytest.raises(KeyboardInterrupt):
        run(compose(*SMOKE, "checkpoint.every=0"), tmp_path)
    now = summary(tmp_path)
    assert now["status"] == "interrupted" and now["signal"] == "SIGINT"
    steps = [r["step"] for r in read_metrics(tmp_path)]
    assert steps == list(range(now["steps_completed"])) and now["steps_completed"] >= 30
    assert now["final"]["step"] == steps[-1]
    (previous,) = (tmp_path / "previous").iterdir()  # the finished run, moved aside whole
    assert summary(previous)["status"] == "finished"
    assert (previous / "figures" / "loss.png").exists() and not (tmp_path / "figures").exists()
    assert len(read_metrics(previous)) == 21
    assert [(r["status"], r["steps_completed"]) for r in load_runs(tmp_path)] == [
        ("interrupted", now["steps_completed"])]


def test_truncated_newest_checkpoint_resumes_from_the_older_one(compose, tmp_path, interrupt_at,
                                                                caplog):
    """SIGTERM (preemption) at step 45 saves a checkpoint there (between the regular ones every 10);
    that newest one truncated, resume falls back to step 40."""
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    run(compose(*SMOKE), whole)
    interrupt_at(45, signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        run(compose(*SMOKE), broken)
    assert (summary(broken)["status"], summary(broken)["signal"]) == ("interrupted", "SIGTERM")
    newest = sorted((broken / "checkpoints").glob("ckpt_*.npz"))[-1]
    assert newest.name == f"ckpt_{summary(broken)['steps_completed']:09d}.npz" == "ckpt_000000045.npz"
    os.truncate(newest, 2000)
    with caplog.at_level(logging.INFO, logger="dynamics"):
        resumed = run(compose(*SMOKE, "resume=true"), broken)
    assert resumed["status"] == "finished"
    assert f"skipped {newest.name}" in caplog.text and "resumed from step 40" in caplog.text
    assert (broken / "metrics.jsonl").read_bytes() == (whole / "metrics.jsonl").read_bytes()
    assert resumed["verdict"] == summary(whole)["verdict"]

    caplog.clear()  # a finished run: resume does nothing and keeps its summary
    for ckpt in (broken / "checkpoints").glob("ckpt_*.npz"):
        os.truncate(ckpt, 100)
    with caplog.at_level(logging.INFO, logger="dynamics"):
        again = run(compose(*SMOKE, "resume=true"), broken)
    assert again == summary(broken) and again["status"] == "finished"
    assert "already finished at step 60; nothing to do" in caplog.text


def test_resume_without_a_checkpoint_says_so(compose, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="dynamics"):
        out = run(compose("+exp=smoke", "resume=true"), tmp_path / "typo")
    assert out["status"] == "finished"
    assert "resume: no checkpoint in" in caplog.text and "starting from step 0" in caplog.text


def test_sigint_in_a_vmapped_sweep_leaves_every_point_interrupted_or_diverged(compose, tmp_path,
                                                                              interrupt_at):
    """Ctrl-C in a vmapped learning-rate sweep: each point's directory says ``running`` while it
    trains and then ``interrupted`` at the last chunk end (rows cut back to it), or ``diverged`` at its
    step if it had diverged before; load_runs lists the points with those statuses."""
    cfg = compose("+exp=smoke", "train.steps=200", "train.chunk=5", "checkpoint.every=0",
                  "+vmap.lr=[0.05,40.0]")
    interrupt_at(30)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path)
    healthy, blown = (summary(tmp_path / "points" / str(i)) for i in (0, 1))
    assert healthy["status"] == "interrupted" and healthy["signal"] == "SIGINT"
    assert healthy["steps_completed"] >= 30 and healthy["steps_completed"] % 5 == 0
    steps = [r["step"] for r in read_metrics(tmp_path / "points" / "0")]
    assert steps == list(range(healthy["steps_completed"]))
    assert blown["status"] == "diverged"
    rows = read_metrics(tmp_path / "points" / "1")
    assert blown["diverged_step"] == rows[-1]["step"] < 30 and rows[-1]["loss"] is None
    assert summary(tmp_path)["status"] == "interrupted"
    statuses = {r["run_dir"]: r["status"] for r in load_runs(tmp_path)}
    assert statuses == {str(tmp_path / "points" / "0"): "interrupted",
                        str(tmp_path / "points" / "1"): "diverged"}
