"""Every experiment runs a few steps on CPU and writes the run outputs with a computed verdict.

An experiment file may add CI-only overrides on a line ``# smoke: key=value ...`` (e.g. fewer sample
paths); the common ones are ``train.steps=20 data.n_train=64 data.n_test=64``.
"""

import json
from pathlib import Path

import pytest

from dynamics.run import CONF_DIR, run

# Families with their own reduced-size claim tests (tests/test_<family>*.py) smoke-test in `make test-all`.
# eos_sgd: tests/test_eos_sgd.py; label_noise, margin: tests/test_implicit_bias_tasks.py (short runs of
# the experiment that pass its claim); ntk_width: tests/test_ntk_tasks.py (the task writes its rows and figure).
SLOW_SMOKE = {"central_flow", "central_flow_rmsprop", "ntk", "ntk_prompt", "sde_quadratic", "svag",
              "sqrt_scaling", "label_noise_flow", "mirror_descent", "kernel_rich", "eos_sgd", "label_noise",
              "margin", "ntk_width"}
EXPERIMENTS = [pytest.param(p.stem, marks=pytest.mark.slow) if p.stem in SLOW_SMOKE else p.stem
               for p in sorted((Path(CONF_DIR) / "exp").glob("*.yaml"))]
SMOKE = ["train.steps=20", "data.n_train=64", "data.n_test=64", "claim.seeds=1"]


def smoke_overrides(exp: str) -> list[str]:
    """The CI-sized overrides: the common ones, plus any on a ``# smoke: k=v ...`` line of the file."""
    extra = []
    for line in (Path(CONF_DIR) / "exp" / f"{exp}.yaml").read_text().splitlines():
        if line.startswith("# smoke:"):
            extra += line.removeprefix("# smoke:").split()
    return SMOKE + extra


@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_experiment_runs_a_few_steps_and_writes_its_outputs(compose, tmp_path, exp):
    cfg = compose(f"+exp={exp}", *smoke_overrides(exp))
    summary = run(cfg, tmp_path)
    assert summary["status"] == "finished", summary.get("error")
    saved = json.loads((tmp_path / "summary.json").read_text())
    lr = cfg.optimizer.lr
    hparams = saved["hparams"]
    if cfg.task == "eos_optimizers":  # one entry per optimizer, each with its own step size
        hparams, lr = hparams["gd"], cfg.eos_optimizers.runs["gd"]["optimizer"]["lr"]
    assert hparams["lr"] == lr and "passed" in saved["verdict"]
    children = saved.get("vmap_points") or saved.get("seed_runs") or saved.get("optimizer_runs") or []
    run_dir = tmp_path / children[0]["dir"] if children else tmp_path  # a sweep: its first point
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows and all("loss" in r for r in rows)
    steps = [r["step"] for r in rows]
    assert steps == sorted(steps)
    if cfg.task == "train":
        assert steps[0] == 0 and steps[-1] == cfg.train.steps
    assert list((run_dir / "figures").glob("*.png"))
