"""Central-flow claim through dynamics.run: a reduced GD run passes, the below-band control (η = 0.2,
GD never reaches 2/η) fails with "never reached", the claim fails on missing stable-flow evidence, and
``central.*`` is validated. Full-size runs: experiments/central_flow*/README.md."""

import json

import numpy as np
import pytest

from dynamics.claims import judge
from dynamics.errors import ConfigError
from dynamics.run import run


def _verdict(tmp_path):
    return json.loads((tmp_path / "summary.json").read_text())["verdict"]


def test_below_band_control_never_reaches_the_edge(compose, tmp_path):
    """η = 0.2 (2/η = 10): no catapult in 100 warm-start steps, no arrival in 10 steps: passed false."""
    cfg = compose("+exp=central_flow", "optimizer.lr=0.2", "claim.seeds=1", "train.steps=10",
                  "central.max_warm_start=100")
    summary = run(cfg, tmp_path)
    assert summary["status"] == "finished", summary.get("error")
    verdict = _verdict(tmp_path)
    assert verdict["passed"] is False
    assert any("eos_arrival_step missing (never reached)" in f for f in verdict["failed"]), verdict["failed"]
    assert (tmp_path / "figures" / "central_flow.png").exists()


def test_claim_fails_without_the_stable_flow():
    """Rows that lack the stable flow: its control checks are missing, so the claim cannot pass."""
    n = 120
    t = np.arange(n)
    rows = [{"eff_sharpness/central": 2.0, "n_critical": 1.0, "loss/discrete": 0.03 + 0.001 * (i % 2),
             "predicted_loss": 0.0305, "distance/discrete-central": 0.01, "x_trace": 1e-3,
             "delta2": 1e-3, "step": int(i)} for i in t]
    v = judge("central_flow", rows, {}, {})
    assert v["passed"] is False
    assert "stable_loss_gap missing (control: the stable flow must not track GD)" in v["failed"]
    assert v["checks"]["loss_tracking_median"]["passed"]


def test_central_config_is_validated(compose, tmp_path):
    with pytest.raises(ConfigError, match="central.substeps"):
        run(compose("+exp=central_flow", "central.substeps=0", "claim.seeds=1"), tmp_path)
    with pytest.raises(ConfigError, match="optimizer.name"):
        run(compose("+exp=central_flow", "optimizer.name=adam", "claim.seeds=1"), tmp_path)


@pytest.mark.slow
def test_central_flow_claim_passes_one_seed(compose, tmp_path):
    """The default GD setting (η = 0.9), one seed (seed 0 forks at step 594; ≈ 50 s of CPU)."""
    summary = run(compose("+exp=central_flow", "claim.seeds=1"), tmp_path)
    assert summary["status"] == "finished", summary.get("error")
    verdict = _verdict(tmp_path)
    assert verdict["passed"] is True, verdict["failed"]
