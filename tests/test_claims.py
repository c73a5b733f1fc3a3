"""The claim layer: typed checks, verdicts that fail on missing evidence, the pass-fraction and mean
rules over seeds, and the failure line the command line prints."""

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


def _seed(seed, gap, diff, missing=(), status="finished"):
    """A seed whose verdict has a ``<=`` check and a ``>`` check held by 2 SE under the mean rule."""
    v = verdict([check("gap", gap, "<=", 0.7, CALIBRATED), check("diff", diff, ">", 0.0, se_units=2)],
                missing=missing)
    return {"seed": seed, "status": status, "verdict": v}


def test_mean_rule_judges_each_check_on_its_mean_over_seeds():
    gaps, diffs = [0.2, 0.3, 0.9, 0.4, 0.5], [0.5, 0.6, 0.1, 0.4, 0.5]
    entries = [_seed(s, g, d) for s, g, d in zip(range(5), gaps, diffs)]
    v = aggregate(entries, rule="mean")
    assert v["passed"] is True and v["n_passed"] == 4  # seed 2 fails its own gap bound; the mean holds
    assert aggregate(entries)["passed"] is True  # (4 of 5 by the pass fraction too)
    mean, se = sum(gaps) / 5, math.sqrt(sum((g - 0.46) ** 2 for g in gaps) / 4 / 5)
    assert v["checks"]["gap"]["mean"] == pytest.approx(mean) and v["checks"]["gap"]["se"] == pytest.approx(se)
    assert v["checks"]["gap"]["value"] == pytest.approx(mean)  # se_units 0: the mean itself
    d_mean, d_se = 0.42, math.sqrt(sum((d - 0.42) ** 2 for d in diffs) / 4 / 5)
    assert v["checks"]["diff"]["value"] == pytest.approx(d_mean - 2 * d_se)  # held by 2 SE
    # a mean above the bound fails, and the line says the mean and its SE
    worse = [_seed(s, g + 0.3, d) for s, g, d in zip(range(5), gaps, diffs)]
    w = aggregate(worse, rule="mean")
    assert w["passed"] is False and w["failed"][0].startswith("gap 0.76 > 0.7 (mean of 5 seeds 0.76 ± SE")
    # a difference whose mean is positive but within 2 SE of 0 fails
    noisy = [_seed(s, 0.3, d) for s, d in zip(range(5), [0.5, -0.4, 0.3, -0.2, 0.1])]
    n = aggregate(noisy, rule="mean")
    assert n["passed"] is False and [f.split(" ")[0] for f in n["failed"]] == ["diff"]


def test_mean_rule_drops_incomplete_seeds_and_fails_above_the_limit():
    good = [_seed(s, 0.3, 0.5 + 0.01 * s) for s in range(5)]
    one = good[:4] + [_seed(4, 0.1, 0.9, missing=["k16 control GD run"])]
    v = aggregate(one, rule="mean")
    assert v["passed"] is True and v["dropped"] == {4: "missing k16 control GD run"}
    assert v["complete_seeds"] == [0, 1, 2, 3] and v["checks"]["gap"]["mean"] == pytest.approx(0.3)
    two = one[:3] + [{"seed": 3, "status": "diverged", "diverged_step": 9, "verdict": None}, one[4]]
    v = aggregate(two, rule="mean")
    assert v["passed"] is False and v["failed"][0] == "2/5 seeds dropped, at most 1 allowed"
    assert "seed 3: diverged at step 9" in v["failed"]
    assert aggregate(good[:1], rule="mean", min_pass_fraction=0.5)["failed"] == [
        "1 complete seeds, 2 required for a mean and its SE"]
    assert aggregate([], rule="mean")["passed"] is False
    # a check a complete seed lacks, and a yes/no check, cannot be averaged: they fail
    lacking = good[:4] + [_seed(4, None, 0.5)]
    assert aggregate(lacking, rule="mean")["failed"] == ["gap missing (missing on seeds [4])"]
    yes_no = [{"seed": s, "status": "finished", "verdict": verdict([check("ok", True, "is", True)])}
              for s in range(3)]
    assert aggregate(yes_no, rule="mean")["failed"] == ["ok missing (not numeric)"]
    assert aggregate([{"seed": 0, "status": "finished", "verdict": {"passed": None}}] * 2,
                     rule="mean")["passed"] is None
    with pytest.raises(ValueError, match="allowed pass_fraction | mean"):
        aggregate(good, rule="median")


def test_failure_line_names_the_failed_checks():
    v = verdict([check("loss_rise_after", 0.136, ">=", 0.2), check("median", 1.0, "in", (1, 1.1))])
    assert failure_line(v) == "passed=False (loss_rise_after 0.136 < 0.2)"
    assert failure_line({"passed": True}) == "passed=True"
    assert failure_line({"passed": None}) == "passed=None"


def test_unknown_criterion_is_a_config_error_naming_the_allowed_ones():
    with pytest.raises(ConfigError, match="claim.criteria.median is not a criterion of claim 'eos'"):
        check_criteria("eos", {"median": 1})
