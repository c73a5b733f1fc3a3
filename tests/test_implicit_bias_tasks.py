"""Reduced implicit-bias experiments through dynamics.run: each claim passes, and its negative control
(a config override) fails with the failing check named. Full-size runs: experiments/<name>/README.md."""

import json

import pytest

from dynamics.errors import ConfigError
from dynamics.run import run

LN = "implicit_bias.label_noise."
FLOW = "implicit_bias.label_noise_flow."
MD = "implicit_bias.mirror_descent."
KR = "implicit_bias.kernel_rich."
MG = "implicit_bias.margin."

SHORT = {
    # d = 40, n = 20, κ = 2; 6k noisy (σ = 3) + 4k clean steps; 2 vmapped seeds
    "label_noise": ["train.steps=10000", "train.log_every=2000", f"{LN}d=40", f"{LN}n=20", f"{LN}sparsity=2",
                    f"{LN}clean_fraction=0.4", f"{LN}num_seeds=2"],
    # η = 0.02, one check time t = 10 (25k steps), 8 runs
    "label_noise_flow": ["optimizer.lr=0.02", "train.steps=25000", "train.log_every=2500", "claim.seeds=1",
                         f"{FLOW}check_flow_times=[1.25]", f"{FLOW}num_runs=8", f"{FLOW}phi_steps=5000",
                         f"{FLOW}flow_dt=5e-3"],
    # T = 4 (diagonal), matrix T = 1
    "mirror_descent": ["train.steps=100", "claim.seeds=1", f"{MD}d=10", f"{MD}matrix_time=1.0"],
    # d = 60, n = 20, κ = 2; rich side at α = 0.03 (α = 0.01 needs ~10⁵ steps)
    "kernel_rich": ["train.steps=40000", "train.log_every=10000", "claim.seeds=1", f"{KR}d=60", f"{KR}n=20",
                    f"{KR}sparsity=2", f"{KR}alphas=[0.03,0.3,1.0]", "+claim.criteria.rich_alpha=0.03"],
    # 5k steps, 2 vmapped seeds; the margin is still growing (log-slowly): bound 0.85
    "margin": ["train.steps=5000", "train.log_every=500", f"{MG}num_seeds=2", "+claim.criteria.min_ratio=0.85"],
}

CONTROLS = {
    # σ = 0: the "label-noise" run is GD and stays dense
    "label_noise": ([f"{LN}label_noise_std=0.0", "train.steps=1000"], "ln_rel_err"),
    # the wrong constant c/2 as the flow
    "label_noise_flow": ([f"{FLOW}flow_constant=0.5"], "ratio_t10"),
    # generic (non-commuting) measurements for X = UUᵀ
    "mirror_descent": ([f"{MD}matrix_commuting=false"], "ratio_matrix_0"),
    # a grid without the rich-side α
    "kernel_rich": ([f"{KR}alphas=[0.3,1.0]", "train.steps=100"], "missing α = 0.03"),
    # large init
    "margin": ([f"{MG}init_scale=1.0", "train.steps=1000"], "ratio"),
}


def _verdict(tmp_path):
    return json.loads((tmp_path / "summary.json").read_text())["verdict"]


@pytest.mark.parametrize("exp", sorted(SHORT))
def test_short_experiment_passes_its_claim(compose, tmp_path, exp):
    summary = run(compose(f"+exp={exp}", *SHORT[exp]), tmp_path)
    assert summary["status"] == "finished", summary.get("error")
    verdict = _verdict(tmp_path)
    assert verdict["passed"] is True, verdict["failed"]
    assert verdict["checks"] if "checks" in verdict else verdict["per_check"]
    assert (tmp_path / "figures" / f"{exp}.png").exists()


# the controls of label_noise and kernel_rich are cheap; the other three run under `make test-all` (their
# claim logic on hand-made evidence is in test_implicit_bias_claims.py)
FAST_CONTROLS = {"label_noise", "kernel_rich"}


@pytest.mark.parametrize("exp", [e if e in FAST_CONTROLS else pytest.param(e, marks=pytest.mark.slow)
                                 for e in sorted(CONTROLS)])
def test_negative_control_fails_naming_its_check(compose, tmp_path, exp):
    overrides, named = CONTROLS[exp]
    run(compose(f"+exp={exp}", *SHORT[exp], *overrides), tmp_path)
    verdict = _verdict(tmp_path)
    assert verdict["passed"] is False
    assert any(named in reason for reason in verdict["failed"]), verdict["failed"]


def test_bad_value_names_its_key(compose):
    with pytest.raises(ConfigError, match="implicit_bias.label_noise.model"):
        compose("+exp=label_noise", f"{LN}model=conv")
    with pytest.raises(ConfigError, match="implicit_bias.label_noise_flow.num_runs"):
        compose("+exp=label_noise_flow", f"{FLOW}num_runs=1")
