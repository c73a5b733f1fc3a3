"""NTK claims: every check fails where it should, missing evidence never passes, and the family's claim
passes / its negative control fails through ``dynamics.run.run`` at reduced size (ntk_width in CI; the
fine-tuning claims under ``slow``)."""

import json

import numpy as np
import pytest

from dynamics.claims import CLAIMS


def _width(slopes=(-0.5, -0.45, -0.55), final=0.05):
    widths = np.array([64.0, 256.0, 1024.0])
    errors = np.array([0.3, 0.15, final])
    return {"width": widths, "rel_error": errors, "step": np.arange(3.0), "loss": errors}, {"slopes": list(slopes)}


@pytest.mark.parametrize("change, failed", [
    ({}, None),
    ({"slopes": (-0.2, -0.25, -0.15)}, "slope"),
    ({"final": 0.2}, "final_error"),
])
def test_ntk_width_claim_judges_the_mean_network_slope(change, failed):
    out = CLAIMS.get("ntk_width")(*_width(**change))
    assert out["passed"] is (failed is None)
    assert [k for k, c in out["checks"].items() if not c["passed"]] == ([failed] if failed else [])
    assert out["slope"] == pytest.approx(np.mean(change.get("slopes", (-0.5, -0.45, -0.55))))


def test_ntk_width_claim_needs_two_networks():
    columns, _ = _width()
    out = CLAIMS.get("ntk_width")(columns, {"slopes": [-0.5]})
    assert out["passed"] is False and out["failed"][0].startswith("missing")


def _finetune(sgd_gap=0.3, change=0.25, adam_gap=0.05, adam_entk_gap=0.25):
    return {"k16": {"sgd": {"function_gap": sgd_gap, "kernel_change": change},
                    "adam": {"function_gap": adam_gap, "entk_function_gap": adam_entk_gap}}}


@pytest.mark.parametrize("change, failed", [
    ({}, []),
    ({"sgd_gap": 0.6}, ["k16_sgd_function_gap"]),
    ({"change": 0.5}, ["k16_sgd_kernel_change"]),
    ({"adam_gap": 0.12, "adam_entk_gap": 0.1}, ["k16_adam_gap_vs_entk"]),  # eNTK explains Adam better
    ({"adam_gap": 0.3, "adam_entk_gap": 1.2}, ["k16_adam_function_gap"]),  # beyond the calibrated 0.15
])
def test_ntk_finetune_claim_checks_every_criterion(change, failed):
    out = CLAIMS.get("ntk_finetune")({}, {"results": _finetune(**change)})
    assert out["passed"] is (not failed)
    assert [k for k, c in out["checks"].items() if not c["passed"]] == failed


def test_ntk_finetune_claim_fails_without_its_evidence():
    claim = CLAIMS.get("ntk_finetune")
    assert claim({}, {"results": {}})["passed"] is False  # no results: never a vacuous pass
    no_baseline = _finetune()
    del no_baseline["k16"]["adam"]["entk_function_gap"]
    out = claim({}, {"results": no_baseline})
    assert out["passed"] is False and "missing k16 Adam's eNTK baseline" in out["failed"]
    sgd_only = claim({}, {"results": _finetune(adam_gap=0.9)}, optimizers=["sgd"])
    assert claim({}, {"results": _finetune(adam_gap=0.9)})["passed"] is False
    assert sgd_only["passed"] is True and set(sgd_only["checks"]) == {"k16_sgd_function_gap",
                                                                        "k16_sgd_kernel_change"}
    assert claim({}, {"results": _finetune()}, optimizers=[])["passed"] is False


# ---------------------------------------------------------------------------- through dynamics.run

WIDTH_CI = ("ntk.width.depth=1", "ntk.width.widths=[32,256,2048]", "ntk.width.num_seeds=4",
            "ntk.width.n_inputs=8")  # depth 1: K_emp is a mean of iid terms, no finite-width bias


def _verdict(compose, tmp_path, *overrides):
    from dynamics.run import run

    summary = run(compose(*overrides), tmp_path)
    assert summary["status"] == "finished", summary.get("error")
    return json.loads((tmp_path / "summary.json").read_text())["verdict"]


def test_ntk_width_passes_at_reduced_size(compose, tmp_path):
    verdict = _verdict(compose, tmp_path, "+exp=ntk_width", *WIDTH_CI)
    assert verdict["passed"] is True, verdict["failed"]


def test_ntk_width_control_fails_against_the_wrong_kernel(compose, tmp_path):
    verdict = _verdict(compose, tmp_path, "+exp=ntk_width", *WIDTH_CI, "ntk.width.reference_w_std=1.0")
    assert verdict["passed"] is False and any(f.startswith("slope ") for f in verdict["failed"])


FINETUNE_CI = ("+exp=ntk", "claim.seeds=1", "ntk.finetune.shots=[16]", "data.n_test=200")


@pytest.mark.slow
def test_ntk_finetune_gd_half_passes_and_large_step_control_fails(compose, tmp_path):
    ok = _verdict(compose, tmp_path / "ok", *FINETUNE_CI, "+claim.criteria.optimizers=[sgd]")
    assert ok["passed"] is True, ok["failed"]
    bad = _verdict(compose, tmp_path / "bad", *FINETUNE_CI, "+claim.criteria.optimizers=[sgd]",
                   "optimizer.lr=0.1")
    assert bad["passed"] is False and any("sgd_function_gap" in f for f in bad["failed"])


FINETUNE_ADAM_CI = (*FINETUNE_CI, "+claim.criteria.optimizers=[adam]", "ntk.finetune.pretrain_steps=500")


@pytest.mark.slow
def test_ntk_finetune_adam_half_passes_and_moment_averaging_control_fails(compose, tmp_path):
    """In the A-SignGD regime (β₁ = β₂ = 0) the Adam half passes; default Adam moments (β₁ = 0.9,
    β₂ = 0.999, per-example steps) leave the regime and A-SignGD no longer beats the eNTK."""
    ok = _verdict(compose, tmp_path / "ok", *FINETUNE_ADAM_CI)
    assert ok["passed"] is True, ok["failed"]
    bad = _verdict(compose, tmp_path / "bad", *FINETUNE_ADAM_CI, "ntk.finetune.adam_b1=0.9",
                   "ntk.finetune.adam_b2=0.999")
    assert bad["passed"] is False and any("k16_adam_gap_vs_entk" in f for f in bad["failed"])
