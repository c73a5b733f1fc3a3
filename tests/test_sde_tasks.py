"""SDE experiment tasks and verdicts: part 1 of sde_quadratic against closed forms, verdict logic."""

import math

import jax
import numpy as np
import pytest

from dynamics.sde import sgd_moments, sgd_sde_moments
from dynamics.tasks.sde import H2, S2, THETA2, max_deviation, sgd_part
from dynamics.claims import CLAIMS as VERDICTS


def test_sgd_part_matches_closed_forms_and_weak_error_is_first_order(compose):
    """Monte Carlo (4k paths, f64) within 5 SE of the closed forms; weak-error ratio ≈ 2 (O(η))."""
    cfg = compose("+exp=sde_quadratic", "train.steps=20", "sde.num_paths=4000")
    with jax.enable_x64(True):
        out, rows, _ = sgd_part(cfg, jax.random.key(1), jax.numpy.float64)
    assert [r["step"] for r in rows] == list(range(21))
    lr, t_end = cfg.optimizer.lr, 20 * cfg.optimizer.lr
    for lv in out["levels"]:
        assert lv["z_discrete"] <= 5 and lv["z_sde"] <= 5 and lv["z_var_discrete"] <= 5, lv
    # the exact weak error is the independent closed forms' relative gap in E f(θ_T)
    def ef(moments):
        mean, var = moments
        return float(np.sum(0.5 * H2 * (np.asarray(mean) ** 2 + np.asarray(var))))
    for level, eta in enumerate((lr, lr / 2)):
        k = int(round(t_end / eta))
        want = abs(ef(sgd_moments(eta, H2, S2, THETA2, k)) / ef(sgd_sde_moments(eta, H2, S2, THETA2,
                                                                                t_end)) - 1)
        assert math.isclose(out["levels"][level]["weak_error_exact"], want, rel_tol=1e-6)
    assert 1.7 <= out["weak_error_ratio_exact"] <= 2.3
    assert out["weak_error_ratio_mc"] >= 1.3


def test_max_deviation_uses_block_means_of_the_last_three_quarters():
    base = np.ones(21)
    curve = np.ones(21)
    curve[:5] = 10.0  # the first quarter is ignored
    assert max_deviation(curve, base) == 0.0
    curve[-3:] = 1.3  # 16 points in blocks of 4, 3, 3, 3, 3: the last block
    assert max_deviation(curve, base) == pytest.approx(0.3)
    curve[-4:] = 1.3  # one point into the fourth block: mean 1.1
    assert max_deviation(curve, base) == pytest.approx(0.3)


def _sde_context(sqrt_dev=0.02, linear_dev=0.5, control=0.9, ratio=2.0):
    level = {"z_discrete": 1.0, "z_sde": 1.0, "z_var_discrete": 1.0, "weak_error_exact": 0.1,
             "weak_error_mc": 0.1}
    runs = ([{"case": c, "rule": "sqrt", "max_deviation": sqrt_dev} for c in ("adam", "rmsprop")]
            + [{"case": c, "rule": "linear", "max_deviation": linear_dev} for c in ("adam", "rmsprop")]
            + [{"case": "sgd", "rule": "linear", "max_deviation": 0.01},
               {"case": "control", "rule": "sqrt", "max_deviation": control}])
    adaptive = {n: {"levels": [{"weak_error": 0.1, "se": 0.01}, {"weak_error": 0.1 / ratio,
                                                                   "se": 0.01}],
                    "weak_error_ratio": ratio} for n in ("rmsprop", "adam")}
    return {"sgd": {"levels": [level, level], "weak_error_ratio_exact": 2.0,
                    "weak_error_ratio_mc": 2.0},
            "adaptive": adaptive,
            "scaling": {"runs": runs, "floor_adam": {"rel_error": 0.01}}}


@pytest.mark.parametrize("kwargs, failing", [
    ({}, None),
    ({"sqrt_dev": 0.08}, "sqrt_rule_holds"),
    ({"linear_dev": 0.1}, "linear_rule_fails"),
    ({"control": 0.02}, "control_breaks_sqrt_rule"),
    ({"ratio": 1.1}, "adam_weak_error_shrinks"),
])
def test_sde_quadratic_verdict_fails_on_the_broken_claim(kwargs, failing):
    verdict = VERDICTS.get("sde_quadratic")({}, _sde_context(**kwargs))
    assert verdict["passed"] is (failing is None)
    if failing:
        assert verdict["checks"][failing] is False


def _ladder(*pairs):
    return [{"d2": d2, "d2_se": se} for d2, se in pairs]


@pytest.mark.parametrize("train_loss, passed, status", [
    # shrinks (the last pair clipped to noise)
    ([(2e-2, 4e-3), (2e-3, 1e-3), (-5e-4, 1e-3)], True, "shrinks"),
    # the last gap is resolvably above the middle one: it grows again
    ([(2e-2, 4e-3), (1e-3, 5e-4), (1e-2, 5e-4)], False, "grows"),
    # the first gap is not resolvably above the last one: no evidence, and no other metric shrinks
    ([(2e-2, 4e-3), (1e-2, 4e-3), (1.5e-2, 6e-3)], False, "inconclusive"),
])
def test_svag_ladder_verdict(train_loss, passed, status):
    flat = _ladder((2.5e-5, 1.6e-5), (2.5e-5, 1.2e-5), (2.5e-5, 1.8e-5))  # each 2 SE from 0, all equal
    gaps = {"adam": {"train_loss": _ladder(*train_loss), "test_accuracy": flat}}
    verdict = VERDICTS.get("svag_ladder")({}, {"gaps": gaps})
    assert verdict["passed"] is passed
    assert verdict["status"] == {"adam/train_loss": status, "adam/test_accuracy": "inconclusive"}


def test_svag_ladder_verdict_is_not_vacuous_and_catches_growth_from_noise():
    noise = _ladder((1e-5, 1e-5), (-1e-5, 1e-5), (1e-5, 1e-5))
    verdict = VERDICTS.get("svag_ladder")({}, {"gaps": {"adam": {"train_loss": noise}}})
    assert verdict["passed"] is False  # nothing resolved: no evidence either way
    assert verdict["checks"] == {"adam_train_loss_does_not_grow": True,
                                 "adam_has_a_shrinking_metric": False}
    grows = _ladder((1e-5, 1e-5), (1e-5, 1e-5), (1e-3, 1e-4))
    verdict = VERDICTS.get("svag_ladder")({}, {"gaps": {"adam": {"train_loss": grows}}})
    assert verdict["status"]["adam/train_loss"] == "grows"


def test_scaling_rule_verdict():
    gaps = {"adam/sqrt": {0.25: 0.03, 0.0625: 0.05}, "adam/linear": {0.25: 0.2, 0.0625: 0.6},
            "gd/linear": {0.25: 0.04, 0.0625: 0.06}}
    assert VERDICTS.get("scaling_rule")({}, {"gaps": gaps})["passed"] is True
    gaps["adam/linear"][0.0625] = 0.08  # the linear rule no longer departs
    assert VERDICTS.get("scaling_rule")({}, {"gaps": gaps})["passed"] is False
