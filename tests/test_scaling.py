"""Scaling rules against hand-computed values, the β range check and SDE-constant invariance."""

import math

import pytest

from dynamics.errors import ConfigError
from dynamics.scaling import (SCALING_RULES, apply_scaling, linear_scaling, sqrt_scaling,
                              steps_multiplier)
from dynamics.sde import adaptive_constants

BASE = {"lr": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 0.01,
        "momentum": 0.5, "batch_size": 64}


def _close(got: dict, want: dict):
    assert set(got) == set(want)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-12, abs=1e-15), k


def test_sqrt_adam_up_and_down():
    _close(sqrt_scaling(BASE, 4, optimizer="adam"),
           {"lr": 2e-3, "b1": 0.6, "b2": 0.996, "eps": 5e-9, "weight_decay": 0.02,
            "momentum": 0.5, "batch_size": 256})
    _close(sqrt_scaling(BASE, 0.25, optimizer="adamw"),
           {"lr": 5e-4, "b1": 0.975, "b2": 0.99975, "eps": 2e-8, "weight_decay": 0.005,
            "momentum": 0.5, "batch_size": 16})


def test_sqrt_rmsprop_eps_inside_sqrt_scales_by_kappa():
    hp = {"lr": 1e-2, "b1": 0.2, "b2": 0.99, "eps": 1e-6, "batch_size": 32}
    # b1 is unused by rmsprop: copied even though 1 - 4 (1 - 0.2) < 0.
    _close(sqrt_scaling(hp, 4, optimizer="rmsprop"),
           {"lr": 2e-2, "b1": 0.2, "b2": 0.96, "eps": 2.5e-7, "batch_size": 128})
    _close(sqrt_scaling(hp, 1 / 16, optimizer="rmsprop"),
           {"lr": 2.5e-3, "b1": 0.2, "b2": 1 - 0.01 / 16, "eps": 1.6e-5, "batch_size": 2})


def test_sqrt_sgd_scales_lr_only():
    _close(sqrt_scaling(BASE, 9, optimizer="momentum"), {**BASE, "lr": 3e-3, "batch_size": 576})


def test_linear_rule():
    _close(linear_scaling(BASE, 4), {**BASE, "lr": 4e-3, "batch_size": 256})
    _close(linear_scaling(BASE, 0.5, optimizer="adam"), {**BASE, "lr": 5e-4, "batch_size": 32})


def test_beta_out_of_range_names_the_key():
    assert sqrt_scaling(BASE, 10, optimizer="adam")["b1"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ConfigError, match=r"optimizer\.b1=0\.9 cannot be scaled by kappa=11") as e:
        sqrt_scaling(BASE, 11, optimizer="adam")
    assert "\n" not in str(e.value) and "kappa <= 10" in str(e.value)
    with pytest.raises(ConfigError, match=r"optimizer\.b2"):
        sqrt_scaling({"b2": 0.999}, 1001, optimizer="rmsprop")


@pytest.mark.parametrize("kappa", [0, -1, float("nan"), "x"])
def test_bad_kappa(kappa):
    with pytest.raises(ConfigError, match="scaling.kappa"):
        sqrt_scaling(BASE, kappa)


def test_batch_must_stay_integer_and_optimizer_known():
    with pytest.raises(ConfigError, match="batch_size"):
        sqrt_scaling({"batch_size": 10}, 0.25)
    with pytest.raises(ConfigError, match="optimizer.name='lion'"):
        sqrt_scaling(BASE, 2, optimizer="lion")


def test_registry_and_apply():
    assert SCALING_RULES.names() == ["linear", "none", "sqrt"]
    _close(apply_scaling("none", "adam", BASE, 2), {**BASE, "batch_size": 128})
    _close(apply_scaling("sqrt", "adam", BASE, 4), sqrt_scaling(BASE, 4, optimizer="adam"))
    with pytest.raises(ConfigError, match="scaling.rule='cube'"):
        apply_scaling("cube", "adam", BASE, 2)
    assert steps_multiplier(4) == 0.25


def test_sqrt_round_trip():
    back = sqrt_scaling(sqrt_scaling(BASE, 0.125, optimizer="adam"), 8, optimizer="adam")
    _close(back, BASE)


@pytest.mark.parametrize("kappa", [0.25, 4.0])
def test_sqrt_rule_keeps_sde_constants(kappa):
    """σ0 = ησ, ε0 = εη, c_i = (1 − β_i)/η² are invariant when σ = 1/√B (Malladi et al.)."""
    new = sqrt_scaling(BASE, kappa, optimizer="adam")
    a = adaptive_constants(BASE["lr"], b1=BASE["b1"], b2=BASE["b2"], eps=BASE["eps"],
                           sigma=1 / math.sqrt(BASE["batch_size"]))
    b = adaptive_constants(new["lr"], b1=new["b1"], b2=new["b2"], eps=new["eps"],
                           sigma=1 / math.sqrt(new["batch_size"]))
    for x, y in zip(a[:4], b[:4], strict=True):
        assert y == pytest.approx(x, rel=1e-9)
    # the same epochs: steps/κ of SDE time κη² each.
    assert b.dt * steps_multiplier(kappa) == pytest.approx(a.dt, rel=1e-12)
    # the linear rule does not keep them.
    lin = linear_scaling(BASE, kappa, optimizer="adam")
    c = adaptive_constants(lin["lr"], b1=lin["b1"], b2=lin["b2"], eps=lin["eps"],
                           sigma=1 / math.sqrt(lin["batch_size"]))
    assert abs(c.sigma0 / a.sigma0 - 1) > 0.4
