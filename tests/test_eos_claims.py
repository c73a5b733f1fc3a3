"""The EoS family's claims end to end: each passes over its seeds and its negative control fails with
the failing check named. The first test runs in `make test` (reduced size: 256 examples, a 32-32 MLP,
800 steps, seeds 0-2); the full-size defaults and their controls are marked slow (`make test-all`)."""

import pytest

from dynamics.run import run

REDUCED = ["+exp=eos", "data.n_train=256", "model.widths=[32,32]", "train.steps=800", "claim.seeds=3"]


def test_eos_holds_at_the_edge_and_fails_below_the_band(compose, tmp_path):
    """η = 0.5 (2/η = 4) passes on seeds 0-2; η = 0.05 (2/η = 40) never reaches its threshold: the
    control fails on `reached_threshold` and says so. Both step sizes in one vmapped program."""
    summary = run(compose(*REDUCED, "vmap.lr=[0.05,0.5]"), tmp_path)
    control, claim = summary["verdict"]["groups"]
    assert claim["lr"] == 0.5 and claim["passed"] is True and claim["n_passed"] == 3
    assert claim["per_check"]["ratio_median"]["median"] == pytest.approx(1.02, abs=0.03)
    assert control["lr"] == 0.05 and control["passed"] is False and control["n_passed"] == 0
    assert all(s["failed"][0].startswith("reached_threshold") and "never reached 2/η" in s["failed"][0]
               for s in control["per_seed"])
    assert summary["verdict"]["passed"] is False
    assert summary["verdict"]["failed"][0].startswith("lr=0.05: 0/3 seeds passed")


FULL = [  # (experiment, control overrides, the check the control must fail)
    ("eos", ["optimizer.lr=0.1"], "reached_threshold"),
    ("eos_momentum", ["optimizer.lr=0.05"], "reached_threshold"),
    ("eos_adam", ["optimizer.lr=0.0003"], "reached_threshold"),
    ("eos_normalized_gd", ["optimizer=gd", "optimizer.lr=0.5"], "reduction"),
    ("eos_sqrt_loss", ["train.loss=mse", "optimizer.lr=0.5"], "reduction"),
    ("normalization_sharpness", ["optimizer.weight_decay=0.0"], "reduction"),
]


@pytest.mark.slow
@pytest.mark.parametrize("exp,control,failing", FULL, ids=[f[0] for f in FULL])
def test_full_size_claim_passes_and_its_control_fails(compose, tmp_path, exp, control, failing):
    summary = run(compose(f"+exp={exp}"), tmp_path / "claim")
    assert summary["verdict"]["passed"] is True, summary["verdict"]["failed"]
    bad = run(compose(f"+exp={exp}", *control), tmp_path / "control")["verdict"]
    assert bad["passed"] is False
    assert any(failing in reason for reason in bad["failed"]), bad["failed"]
