"""The implicit-bias claims on hand-made evidence: typed checks, the pass fraction over vmapped seeds, and
verdicts that fail when evidence (an α, a seed, a rung of the η ladder, a control) is missing."""

import numpy as np

from dynamics.claims import judge


def _kernel_context(alphas, gd, excess=None):
    n = len(alphas)
    excess = list(gd) if excess is None else excess
    return {"alphas": alphas, "gd_rel_err": gd, "q_rel_err": gd, "gd_to_q": [1e-3] * n, "residual": [1e-10] * n,
            "l2_rel_err": gd[-1], "l1_rel_err": 1e-12, "l1_excess": excess, "l1_frac": list(gd),
            "limit_alphas": [1e-3, 1e-6], "limit_l1_excess": [0.01, 1e-4], "limit_residual": [1e-12, 1e-12]}


def test_kernel_rich_passes_with_its_alphas_and_fails_without_them():
    ok = judge("kernel_rich", [], _kernel_context([0.01, 0.1, 0.3, 1.0], [0.05, 0.4, 0.7, 0.8]), {})
    assert ok["passed"] is True, ok["failed"]
    assert ok["checks"]["rich_l1_excess_a0.01"] == {"value": 0.05, "op": "<", "bound": 0.5,
                                                    "source": "pre-registered", "passed": True,
                                                    "note": "ℓ1 norm nearer min-ℓ1's than min-ℓ2's"}
    assert ok["checks"]["limit_l1_excess_a1e-06"]["value"] == 1e-4
    # no bound at an intermediate α (where the transition lies depends on n, d): α = 0.3 at 0.45 (n = 50)
    assert judge("kernel_rich", [], _kernel_context([0.01, 0.3, 1.0], [0.006, 0.45, 0.64]), {})["passed"] is True
    assert not any(name.startswith(("kernel_rel_err", "rich_rel_err", "precondition")) for name in ok["checks"])
    bad = judge("kernel_rich", [], _kernel_context([0.1, 1.0], [0.4, 0.8]), {})
    assert bad["passed"] is False
    assert any("missing α = 0.01" in f for f in bad["failed"])
    ends = judge("kernel_rich", [], _kernel_context([0.01, 1.0], [0.05, 0.8]), {})
    assert ends["failed"] == ["missing an α between 0.01 and 1 (the transition) in implicit_bias.kernel_rich.alphas"]


def test_kernel_rich_rich_side_is_the_l1_excess_and_the_limit():
    # far from x_ℓ1 in distance (l1_frac 0.74, a near-degenerate ℓ1 problem) but ℓ1-norm excess 0.105: passes
    context = _kernel_context([0.01, 0.1, 1.0], [0.74, 0.86, 1.0], excess=[0.105, 0.46, 0.999])
    assert judge("kernel_rich", [], context, {})["passed"] is True
    # the rich α at the midpoint of the ℓ1 norms fails (a measured failure, not a missing α)
    v = judge("kernel_rich", [], {**context, "l1_excess": [0.5, 0.7, 0.999]}, {})
    assert v["failed"] == ["rich_l1_excess_a0.01 0.5 >= 0.5 (ℓ1 norm nearer min-ℓ1's than min-ℓ2's)"]
    v = judge("kernel_rich", [], {**context, "limit_l1_excess": [0.2, 0.12]}, {})
    assert v["failed"] == ["limit_l1_excess_a1e-06 0.12 >= 0.1"]
    v = judge("kernel_rich", [], {**context, "limit_residual": [1e-12, 1e-3]}, {})
    assert v["failed"] == ["limit_residual_a1e-06 0.001 > 0.0001"]
    # a min-ℓ1 interpolant that is not w* is reported, not judged
    assert judge("kernel_rich", [], {**context, "l1_rel_err": 0.68}, {})["passed"] is True


def test_kernel_rich_judges_convergence_the_kernel_end_and_monotonicity():
    context = _kernel_context([0.01, 0.3, 1.0], [0.05, 0.7, 0.805])
    context["l2_rel_err"] = 0.8  # |0.805 − 0.8| = 0.005 < 0.01
    v = judge("kernel_rich", [], {**context, "residual": [9.3e-4, 1e-10, 1e-10], "gd_steps": [2000000, 7000, 2000]},
              {})
    assert v["failed"] == ["residual_a0.01 0.00093 > 0.0001"] and v["gd_steps"] == [2000000, 7000, 2000]
    assert v["checks"]["l2_excess_a1"]["passed"] is True
    assert np.isclose(v["checks"]["l2_excess_a1"]["value"], 0.005)
    far = judge("kernel_rich", [], {**context, "l2_rel_err": 0.82}, {})  # |0.805 − 0.82| = 0.015
    assert far["failed"] == ["l2_excess_a1 0.015 >= 0.01"]
    flat = judge("kernel_rich", [], {**context, "l1_frac": [0.1, 0.81, 0.8]}, {})  # distance to x_ℓ1 falls
    assert flat["checks"]["min_l1_frac_increase"]["passed"] is False
    assert np.isclose(flat["checks"]["min_l1_frac_increase"]["value"], -0.01)


def test_label_noise_judges_each_seed_and_counts_missing_seeds():
    context = {"seeds": [0, 1, 2, 3, 4], "num_seeds": 5, "ln_rel_err": [0.01, 0.02, 0.01, 0.3, 0.01],
               "gd_rel_err": [0.8] * 5, "l1_rel_err": [1e-12] * 5, "min_pass_fraction": 0.8}
    v = judge("label_noise", [], context, {})
    assert v["passed"] is True and v["n_passed"] == 4 and v["per_check"]["ln_rel_err"]["n_passed"] == 4
    assert v["per_seed"][3]["failed"] == ["ln_rel_err 0.3 >= 0.1"]
    short = {**context, "seeds": [0, 1, 2], "ln_rel_err": [0.01] * 3, "gd_rel_err": [0.8] * 3,
             "l1_rel_err": [1e-12] * 3}
    v = judge("label_noise", [], short, {})
    assert v["passed"] is False and v["failed"][0] == "3/5 seeds passed, 4 required"


def _mirror_context(**gaps):
    base = {"uu_minus_vv": [4e-3, 2e-3, 1e-3], "uv": [4e-3, 2e-3, 1e-3], "power3": [4e-3, 2e-3, 1e-3],
            "matrix": [4e-2, 2e-2, 1e-2], "matrix_generic": [0.1, 0.1, 0.1]}
    return {"gaps": {**base, **gaps}, "commuting": ["uu_minus_vv", "uv", "power3", "matrix"],
            "control": ["matrix_generic"], "lie_brackets": {"uu_minus_vv": 0.0, "UUt": 2.0},
            "lie_commuting": ["uu_minus_vv"], "lie_noncommuting": ["UUt"], "lrs": [], "matrix_lrs": []}


def test_mirror_descent_needs_halving_gaps_and_a_flat_control():
    assert judge("mirror_descent", [], _mirror_context(), {})["passed"] is True
    v = judge("mirror_descent", [], _mirror_context(matrix=[0.1, 0.1, 0.1]), {})
    assert v["passed"] is False and "ratio_matrix_0 1 outside [1.8, 2.2]" in v["failed"]
    v = judge("mirror_descent", [], _mirror_context(matrix_generic=[0.1]), {})
    assert v["failed"] == ["missing control matrix_generic"]
    v = judge("mirror_descent", [], _mirror_context(matrix_generic=[0.08, 0.04, 0.02]), {})
    assert any(f.startswith("control_limit_fraction_matrix_generic 0 < 0.5") for f in v["failed"])


def test_label_noise_flow_needs_every_check_time():
    columns = {"step": np.array([0, 10, 20]), "ratio": np.array([np.nan, 0.05, 0.04]),
               "se_ratio": np.array([np.nan, 0.02, 0.02]), "control_ratio": np.array([np.nan, 0.6, 0.2])}
    context = {"check_times": [1.0, 2.0], "check_steps": [10, 20], "c": 0.125, "num_runs": 8,
               "discrimination_constant": 0.5, "phi_residual": 1e-12}
    from dynamics.claims import CLAIMS

    assert CLAIMS.get("label_noise_flow")(columns, context)["passed"] is True
    v = CLAIMS.get("label_noise_flow")(columns, {**context, "check_times": [1.0, 2.0, 4.0],
                                                 "check_steps": [10, 20, 40]})
    assert v["passed"] is False and "ratio_t4 missing" in v["failed"]
    v = CLAIMS.get("label_noise_flow")(columns, {**context, "check_times": [1.0, 8.0], "check_steps": [10, None]})
    assert "ratio_t8 missing (check time beyond the run (t = optimizer.lr² · train.steps))" in v["failed"]
    flat = {**columns, "control_ratio": np.array([np.nan, 0.1, 0.1])}
    v = CLAIMS.get("label_noise_flow")(flat, context)
    assert v["passed"] is False and v["failed"][0].startswith("discrimination_max_ratio 0.1 <= 0.15")
