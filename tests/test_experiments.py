"""Every experiment runs a few steps on CPU and writes the run outputs with a computed verdict."""

import json
from pathlib import Path

import pytest

from dynamics.run import CONF_DIR, run

EXPERIMENTS = sorted(p.stem for p in (Path(CONF_DIR) / "exp").glob("*.yaml"))


@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_experiment_runs_a_few_steps_and_writes_its_outputs(compose, tmp_path, exp):
    cfg = compose(f"+exp={exp}", "train.steps=20", "data.n_train=64", "data.n_test=64")
    summary = run(cfg, tmp_path)
    assert summary["status"] == "finished", summary.get("error")
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 0 and rows[-1]["step"] == 20 and all("loss" in r for r in rows)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["hparams"]["lr"] == cfg.optimizer.lr and "passed" in saved["verdict"]
    assert (tmp_path / "figures" / "loss.png").exists()
