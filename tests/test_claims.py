"""The claim layer: typed checks, verdicts that fail on missing evidence, the pass-fraction rule over
seeds, and the failure line the command line prints."""

import math

import pytest

from dynamics.claims import (CALIBRATED, aggregate, check, check_criteria, failure_line,
                             missing_verdict, seed_list, verdict)
from dynamics.errors import ConfigError


def test_check_compares_and_describes_its_failure():
    ok = check("loss_rise_after", 0.3, ">=", 0.2, CALIBRATED)
    bad = check("loss_rise_after", 0.136, ">=", 0.2)
    assert ok.passed and not bad.passed
    assert bad.describe() == "loss_rise_after 0.136 < 0.2"
    assert check("ratio", 1.2, "in", (1.0, 1.1)).describe() == "ratio 1.2 outside [1, 1.1]"
    assert check("ratio", 1.05, "in", [1.0, 1.1]).passed
    assert check("p95", 1.3, "<", 1.25).describe() == "p95 1.3 >= 1.25"


@pytest.mark.parametrize("value", [None, math.nan, math.inf])
def test_a_missing_or_non_finite_value_fails(value):
    c = check("gap", value, "<=", 1.0)
    assert not c.passed and c.value is None and c.describe() == "gap missing"


def test_verdict_fails_on_empty_checks_and_on_missing_evidence():
    assert verdict([])["passed"] is False and verdict([])["failed"] == ["no checks"]
    v = verdict([check("a", 1, "<", 2)], {"x": 1}, missing=["the control"])
    assert v["passed"] is False and v["failed"] == ["missing the control"] and v["x"] == 1
    assert missing_verdict("seed 3")["failed"] == ["missing seed 3"]
    good = verdict([check("a", 1, "<", 2), check("b", True, "is", True)])
    assert good["passed"] is True and good["checks"]["a"] == {
        "value": 1.0, "op": "<", "bound": 2, "source": "pre-registered", "passed": True}


def test_seed_contract():
    assert seed_list(0, 5) == [0, 1, 2, 3, 4] and seed_list(100, 3) == [100, 101, 102]


def _entry(seed, passed=True, status="finished", value=1.0):
    v = verdict([check("gap", value if passed else 5.0, "<", 2.0)])
    return {"seed": seed, "status": status, "verdict": v}


def test_pass_fraction_counts_diverged_and_failed_seeds_against_the_claim():
    five = [_entry(s) for s in range(5)]
    assert aggregate(five)["passed"] is True
    one_bad = five[:4] + [_entry(4, passed=False)]
    v = aggregate(one_bad)
    assert v["passed"] is True and v["n_passed"] == 4 and v["n_required"] == 4
    two_bad = five[:3] + [_entry(3, passed=False),
                          {"seed": 4, "status": "diverged", "diverged_step": 7, "verdict": None}]
    v = aggregate(two_bad)
    assert v["passed"] is False
    assert v["failed"][0] == "3/5 seeds passed, 4 required"
    assert "seed 3: gap 5 >= 2" in v["failed"] and "seed 4: diverged at step 7" in v["failed"]
    assert v["statuses"] == {"diverged": 1, "finished": 4}
    gap = v["per_check"]["gap"]
    assert gap["values"] == [1.0, 1.0, 1.0, 5.0, None] and gap["n_passed"] == 3
    assert gap["median"] == 1.0 and gap["mean"] == pytest.approx(2.0)
    assert gap["se"] == pytest.approx(2.0 / 2.0)  # std([1,1,1,5], ddof=1) = 2, / sqrt(4)
    assert aggregate([])["passed"] is False
    assert aggregate(five, min_pass_fraction=1.0)["n_required"] == 5


def test_failure_line_names_the_failed_checks():
    v = verdict([check("loss_rise_after", 0.136, ">=", 0.2), check("median", 1.0, "in", (1, 1.1))])
    assert failure_line(v) == "passed=False (loss_rise_after 0.136 < 0.2)"
    assert failure_line({"passed": True}) == "passed=True"
    assert failure_line({"passed": None}) == "passed=None"


def test_unknown_criterion_is_a_config_error_naming_the_allowed_ones():
    with pytest.raises(ConfigError, match="claim.criteria.median is not a criterion of claim 'eos'"):
        check_criteria("eos", {"median": 1})
