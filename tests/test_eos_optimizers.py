"""`+exp=eos_optimizers`: claim eos for several optimizers in one command. The claim over optimizers on
hand-made summaries, the per-optimizer configs (probe, criteria), bad entries failing in validation, a
reduced end-to-end run where GD passes and Adam below its band fails (by name), and the full-size
claim and its control (slow)."""

import pytest

from dynamics.claims import judge
from dynamics.errors import ConfigError
from dynamics.run import run

REDUCED = ["+exp=eos_optimizers", "data.n_train=256", "model.widths=[32,32]", "train.steps=800",
           "claim.seeds=2"]


def summary(passed, failed=()):
    return {"status": "finished", "verdict": {"passed": passed, "failed": list(failed)}}


def test_claim_passes_only_when_every_optimizer_passes():
    ok = judge("eos_optimizers", [], {"results": {"gd": summary(True), "adam": summary(True)}}, {})
    assert ok["passed"] is True and ok["optimizers"]["adam"]["passed"] is True
    bad = judge("eos_optimizers", [], {"results": {
        "gd": summary(True),
        "lion": summary(False, ["not applicable: no known threshold for lion"]),
        "adam": {"status": "failed", "error": "RuntimeError: boom"}}}, {})
    assert bad["passed"] is False
    assert bad["failed"] == ["lion is not true (not applicable: no known threshold for lion)",
                             "adam is not true (RuntimeError: boom)"]
    assert judge("eos_optimizers", [], {"results": {}}, {})["failed"] == ["no checks"]


def test_each_entry_gets_its_optimizer_probe_and_criteria(compose):
    from dynamics.tasks.eos_optimizers import optimizer_configs

    configs = optimizer_configs(compose("+exp=eos_optimizers"))
    assert list(configs) == ["gd", "momentum", "nesterov", "adam", "adamw", "nadam", "rmsprop"]
    gd, momentum, nadam = configs["gd"], configs["momentum"], configs["nadam"]
    assert (gd.task, gd.claim.name, gd.probes.sharpness.every, gd.probes.precond_sharpness.every) == (
        "train", "eos", 10, 0)
    assert momentum.probes.sharpness.where == "midpoint"
    assert momentum.claim.criteria == {"median_range": [0.97, 1.1]}
    assert (nadam.optimizer.name, nadam.probes.sharpness.every, nadam.probes.precond_sharpness.every,
            nadam.probes.precond_sharpness.max_iters) == ("nadam", 0, 10, 300)


@pytest.mark.parametrize("override, message", [
    ("+eos_optimizers.runs.gd.optimizer.lrr=1", "eos_optimizers.runs.gd.optimizer.lrr is invalid: "
                                                "unknown key"),
    ("+eos_optimizers.runs.gd.extra=1", "eos_optimizers.runs.gd.extra is invalid: unknown key"),
    ("eos_optimizers.runs.gd.optimizer.lr=-1", "eos_optimizers.runs.gd: optimizer.lr=-1 is invalid"),
    ("eos_optimizers.runs.adam.optimizer.name=sam", "eos_optimizers.runs.adam: optimizer.name='sam' "
                                                    "cannot run in this trainer"),
    ("eos_optimizers.every=7", "eos_optimizers.every=7 is invalid"),
    ("eos_optimizers.only=[gd,lion]", "eos_optimizers.only=['gd', 'lion'] is invalid: 'lion' is not an "
                                      "entry"),
])
def test_bad_entries_fail_in_validation_naming_the_entry(compose, override, message):
    from dynamics.validation import validate

    with pytest.raises(ConfigError) as err:
        validate(compose("+exp=eos_optimizers", override))
    assert message in str(err.value)


@pytest.mark.slow  # make test-all (~40 s); make test keeps the EoS family's reduced test and the smoke run
def test_reduced_gd_passes_and_adam_below_its_band_fails_by_name(compose, tmp_path):
    runs = ("eos_optimizers.only=[gd,adam]", "eos_optimizers.runs.adam.optimizer.lr=0.0003")
    out = run(compose(*REDUCED, *runs), tmp_path)
    verdict = out["verdict"]
    assert list(verdict["optimizers"]) == ["gd", "adam"]
    assert verdict["optimizers"]["gd"]["passed"] is True
    assert verdict["optimizers"]["adam"]["passed"] is False
    assert verdict["passed"] is False and len(verdict["failed"]) == 1
    assert verdict["failed"][0].startswith("adam is not true (0/2 seeds passed")
    assert "reached_threshold" in verdict["failed"][0]
    assert (tmp_path / "figures" / "eos_optimizers.png").exists()
    assert [r["dir"] for r in out["optimizer_runs"]] == ["optimizers/gd", "optimizers/adam"]


@pytest.mark.slow  # make test-all: 7 optimizers × 5 seeds × 2,000 steps, twice (~6 min on 2 free cores)
def test_full_size_claim_passes_and_adam_below_its_band_fails(compose, tmp_path):
    out = run(compose("+exp=eos_optimizers"), tmp_path / "claim")
    assert out["verdict"]["passed"] is True, out["verdict"]["failed"]
    bad = run(compose("+exp=eos_optimizers", "eos_optimizers.runs.adam.optimizer.lr=0.0003"),
              tmp_path / "control")["verdict"]
    assert bad["passed"] is False
    assert [f.split(" ")[0] for f in bad["failed"]] == ["adam"]


def test_ctrl_c_leaves_the_parent_and_the_optimizer_run_interrupted(compose, tmp_path, interrupt_at):
    """SIGINT inside an entry's run: the parent and that entry's directory both say ``interrupted``
    with the step reached (the entry's partial chunk cut back to its last chunk end), and load_runs
    lists the entry, not the parent."""
    import json

    from dynamics.io import load_runs, read_metrics

    cfg = compose("+exp=eos_optimizers", "eos_optimizers.only=[gd]", "claim.seeds=1",
                  "train.steps=60", "train.chunk=5", "eos_optimizers.every=10", "data.n_train=64")
    interrupt_at(30)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path)
    parent = json.loads((tmp_path / "summary.json").read_text())
    child = json.loads((tmp_path / "optimizers" / "gd" / "summary.json").read_text())
    assert parent["status"] == child["status"] == "interrupted"
    assert child["signal"] == "SIGINT" and child["steps_completed"] >= 30
    steps = [r["step"] for r in read_metrics(tmp_path / "optimizers" / "gd")]
    assert steps == list(range(child["steps_completed"]))
    assert [(r["run_dir"], r["status"]) for r in load_runs(tmp_path)] == [
        (str(tmp_path / "optimizers" / "gd"), "interrupted")]
