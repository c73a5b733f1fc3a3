"""A claim over several seeds, end to end: the seed contract, one directory per seed or point, the
pass-fraction verdict in the run's summary, and dropped seeds counted against the claim."""

import json

import pytest

from dynamics.claims import check, verdict
from dynamics.run import run
from dynamics.tasks import TASKS

# A stand-in task whose claim holds on even seeds and fails on odd ones (the claim layer is under test,
# not a family's numerics); seed 13 raises, as a crashing seed would.
if "seed_parity" not in TASKS:
    @TASKS.register("seed_parity")
    def seed_parity(cfg, run_dir):
        if cfg.seed == 13:
            raise RuntimeError("boom")
        run_dir.log([{"step": 0, "loss": float(cfg.seed)}])
        v = verdict([check("parity", cfg.seed % 2, "<", 1)])
        return {"status": "finished", "hparams": {"lr": cfg.optimizer.lr, "seed": cfg.seed},
                "verdict": v}


def _summary(path):
    return json.loads((path / "summary.json").read_text())


def test_seeds_run_in_process_and_the_pass_fraction_judges_them(compose, tmp_path):
    cfg = compose("task=seed_parity", "claim.seeds=4", "seed=10", "claim.min_pass_fraction=0.5")
    summary = run(cfg, tmp_path)
    v = summary["verdict"]
    assert v["seeds"] == [10, 11, 12, 13]  # seed=S shifts every seed of the claim
    assert [s["seed"] for s in summary["seed_runs"]] == [10, 11, 12, 13]
    assert v["n_passed"] == 2 and v["n_required"] == 2 and v["passed"] is True
    assert v["statuses"] == {"failed": 1, "finished": 3}
    assert v["per_seed"][3]["failed"] == ["failed: RuntimeError: boom"]
    assert _summary(tmp_path / "seeds" / "13")["status"] == "failed"
    assert _summary(tmp_path / "seeds" / "11")["verdict"]["passed"] is False
    assert (tmp_path / "figures" / "checks.png").exists()
    strict = run(compose("task=seed_parity", "claim.seeds=4", "seed=10"), tmp_path / "strict")
    assert strict["verdict"]["passed"] is False
    assert strict["verdict"]["failed"][0] == "2/4 seeds passed, 4 required"


SMOKE = ["+exp=smoke", "train.steps=20", "train.chunk=10", "claim.name=eos"]


def test_train_claims_vmap_their_seeds_and_judge_each_point(compose, tmp_path):
    summary = run(compose(*SMOKE, "claim.seeds=3", "seed=7"), tmp_path)
    v = summary["verdict"]
    assert v["seeds"] == [7, 8, 9] and len(v["per_seed"]) == 3
    assert [p["seed"] for p in summary["vmap_points"]] == [7, 8, 9]
    for i, seed in enumerate([7, 8, 9]):
        point = _summary(tmp_path / "points" / str(i))
        assert point["hparams"]["seed"] == seed
        assert point["verdict"]["passed"] is False  # 20 steps never reach 2/η
        assert v["per_check"]["reached_threshold"]["values"][i] == pytest.approx(
            point["verdict"]["ratio_peak"])
    assert v["passed"] is False and v["failed"][0] == "0/3 seeds passed, 3 required"
    assert "reached_threshold" in v["failed"][1] and "never reached 2/η" in v["failed"][1]
    assert (tmp_path / "figures" / "threshold_ratio.png").exists()


def test_a_step_size_sweep_judges_each_step_size_over_its_seeds(compose, tmp_path):
    summary = run(compose(*SMOKE, "claim.seeds=2", "vmap.lr=[0.1,0.2]"), tmp_path)
    groups = summary["verdict"]["groups"]
    assert [g["lr"] for g in groups] == [0.1, 0.2] and all(g["seeds"] == [0, 1] for g in groups)
    assert summary["verdict"]["passed"] is False and len(summary["verdict"]["failed"]) == 2
