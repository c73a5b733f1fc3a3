"""Claims of the implicit-bias experiments, as typed checks (value, bound, pre-registered | calibrated).

Seeds: ``label_noise`` and ``margin`` vmap their seeds inside one run (``seed + i``); their claim judges
each seed and combines them by the pass-fraction rule of ``dynamics.claims.seeds.aggregate`` (at least
``ceil(min_pass_fraction·n)`` of the n seeds pass; each check's per-seed values, median, mean and SE are
reported). ``label_noise_flow``, ``mirror_descent`` and ``kernel_rich`` judge one seed per task run;
``claim.seeds`` runs them over seeds S, S+1, … and the same rule combines them. Which criteria are
calibrated, on which seeds, and the confirmation numbers: experiments/<name>/README.md.
"""

import numpy as np

from dynamics.claims.base import CALIBRATED, CLAIMS, PRE_REGISTERED, check, verdict
from dynamics.claims.seeds import aggregate


def _over_seeds(context: dict, per_seed: list[list], numbers: dict) -> dict:
    """Each vmapped seed's verdict and their aggregate (``claim.rule``). A seed the run lacks (fewer than
    ``context['num_seeds']``) counts as a seed that did not pass."""
    seeds = context["seeds"]
    entries = [{"seed": s, "status": "finished", "verdict": verdict(c)} for s, c in zip(seeds, per_seed)]
    entries += [{"seed": None, "status": "missing"} for _ in range(context["num_seeds"] - len(entries))]
    return {**numbers, **aggregate(entries, min_pass_fraction=context.get("min_pass_fraction", 0.8),
                                      rule=context.get("rule", "pass_fraction"))}


@CLAIMS.register("label_noise")
def label_noise(columns, context, max_ln_rel_err: float = 0.1, min_gd_rel_err: float = 0.5,
                max_l1_rel_err: float = 1e-8) -> dict:
    """Per seed: label-noise GD (then clean GD) recovers the sparse w* (rel err < ``max_ln_rel_err``), plain
    GD from the same init does not (> ``min_gd_rel_err``); precondition: weighted-ℓ1-min interpolation (the
    limit flow's target) recovers w* (< ``max_l1_rel_err``). Pass fraction over the vmapped seeds."""
    del columns
    ln, gd, l1 = context["ln_rel_err"], context["gd_rel_err"], context["l1_rel_err"]
    per_seed = [[check("ln_rel_err", a, "<", max_ln_rel_err, CALIBRATED),
                 check("gd_rel_err", b, ">", min_gd_rel_err, CALIBRATED),
                 check("precondition_l1_rel_err", c, "<", max_l1_rel_err, PRE_REGISTERED)]
                for a, b, c in zip(ln, gd, l1)]
    return _over_seeds(context, per_seed, {"ln_rel_err": ln, "gd_rel_err": gd, "l1_rel_err": l1})


@CLAIMS.register("label_noise_flow")
def label_noise_flow(columns, context, max_ratio: float = 0.15, max_se_ratio: float = 0.075,
                     max_phi_residual: float = 1e-8) -> dict:
    """At each check time t: ‖x̄_LN − x_flow‖ ≤ ``max_ratio`` × ‖x_flow(t) − x_flow(0)‖, with the mean's
    standard error resolved (SE ≤ ``max_se_ratio`` × displacement). The discrimination flow (wrong
    constant) violates the bound at some check time, so the comparison can tell the constants apart;
    Φ(w₀) lies on the zero-loss manifold (residual ≤ ``max_phi_residual``). One seed per run."""
    steps, times = columns["step"], context["check_times"]
    checks, numbers = [], {"check_times": times, "c": context["c"], "num_runs": context["num_runs"]}
    ratios, controls = [], []
    for t, s in zip(times, context["check_steps"]):
        hit = np.flatnonzero(steps == s) if s is not None else np.array([], int)
        i = int(hit[0]) if hit.size else None
        value = (lambda k: float(columns[k][i]) if i is not None else None)  # noqa: E731
        ratios.append(value("ratio"))
        controls.append(value("control_ratio"))
        note = "" if s is not None else "check time beyond the run (t = optimizer.lr² · train.steps)"
        checks.append(check(f"ratio_t{t:.3g}", ratios[-1], "<=", max_ratio, CALIBRATED, note=note))
        checks.append(check(f"se_ratio_t{t:.3g}", value("se_ratio"), "<=", max_se_ratio, CALIBRATED))
    finite = [c for c in controls if c is not None and np.isfinite(c)]
    checks.append(check("discrimination_max_ratio", max(finite) if finite else None, ">", max_ratio,
                        PRE_REGISTERED, note=f"flow with {context['discrimination_constant']:g}·c"))
    checks.append(check("precondition_phi_residual", context["phi_residual"], "<=", max_phi_residual))
    missing = [] if times else ["check times"]
    return verdict(checks, {**numbers, "ratio": ratios, "control_ratio": controls}, missing)


def _halving_ratios(gaps: list[float]) -> list[float]:
    return [g / h if h > 0 else float("inf") for g, h in zip(gaps[:-1], gaps[1:])]


@CLAIMS.register("mirror_descent")
def mirror_descent(columns, context, ratio_band: tuple = (1.8, 2.2), max_control_ratio: float = 1.5,
                   min_control_limit_fraction: float = 0.5, min_control_gap: float = 1e-3,
                   max_commuting_bracket: float = 1e-10, min_noncommuting_bracket: float = 0.1) -> dict:
    """For each commuting model and each halving of η: gap(η)/gap(η/2) ∈ ``ratio_band`` (the gap is O(η),
    theory: 2). The generic-measurement matrix control does not shrink: its ratio at the smallest halving is
    ≤ ``max_control_ratio``, its gap extrapolated to η → 0 (Richardson, 2·gap(η_min) − gap(2η_min)) is at
    least ``min_control_limit_fraction`` of gap(η_min) (O(η) gap: 0; O(1) gap: 1), and gap(η_min) ≥
    ``min_control_gap`` (resolved). Lie brackets vanish for the diagonal models and not for UUᵀ, W₂W₁. One seed per run."""
    del columns
    gaps, lie = context["gaps"], context["lie_brackets"]
    checks, missing = [], []
    for name in context["commuting"]:
        if len(gaps.get(name, [])) < 2:
            missing.append(f"η ladder of {name}")
            continue
        for k, r in enumerate(_halving_ratios(gaps[name])):
            checks.append(check(f"ratio_{name}_{k}", r, "in", tuple(ratio_band), CALIBRATED))
    for name in context["control"]:
        g = gaps.get(name, [])
        if len(g) < 2:
            missing.append(f"control {name}")
            continue
        checks.append(check(f"control_last_ratio_{name}", _halving_ratios(g)[-1], "<=", max_control_ratio,
                            CALIBRATED))
        checks.append(check(f"control_limit_fraction_{name}", (2 * g[-1] - g[-2]) / g[-1] if g[-1] > 0 else None,
                            ">=", min_control_limit_fraction, PRE_REGISTERED))
        checks.append(check(f"control_gap_{name}", g[-1], ">=", min_control_gap, CALIBRATED))
    for name in context["lie_commuting"]:
        checks.append(check(f"bracket_{name}", lie.get(name), "<", max_commuting_bracket, PRE_REGISTERED))
    for name in context["lie_noncommuting"]:
        checks.append(check(f"bracket_{name}", lie.get(name), ">", min_noncommuting_bracket, CALIBRATED))
    ratios = {name: _halving_ratios(g) for name, g in gaps.items()}
    return verdict(checks, {"gaps": gaps, "ratios": ratios, "lie_brackets": lie, "lrs": context["lrs"],
                            "matrix_lrs": context["matrix_lrs"]}, missing)


def _alpha_index(alphas: list[float], alpha: float):
    hits = [i for i, a in enumerate(alphas) if np.isclose(a, alpha, rtol=1e-9)]
    return hits[0] if hits else None


@CLAIMS.register("kernel_rich")
def kernel_rich(columns, context, max_gap: float = 1e-2, max_residual: float = 1e-4, rich_alpha: float = 0.01,
                max_rich_l1_excess: float = 0.5, max_limit_l1_excess: float = 0.1, l2_alpha: float = 1.0,
                l2_tol: float = 0.01) -> dict:
    """GD from each α converged (‖Zx − y‖ ≤ ``max_residual``) onto argmin Q_α (‖x_GD − x_Q‖/‖w*‖ <
    ``max_gap``). Its distance to min-ℓ1 in units of the interpolants' distance, l1_frac = ‖x − x_ℓ1‖/‖x_ℓ2 −
    x_ℓ1‖, increases with α. Rich side in the ℓ1 norm (the α → 0 theorem's quantity), l1_excess = (‖x‖₁ −
    ‖x_ℓ1‖₁)/(‖x_ℓ2‖₁ − ‖x_ℓ1‖₁): GD at α = ``rich_alpha`` has removed more than half of min-ℓ2's excess (<
    ``max_rich_l1_excess``), and argmin Q_α below the grid approaches min-ℓ1 (l1_excess at the smallest limit
    α < ``max_limit_l1_excess``, residual ≤ ``max_residual``): the α → 0 limit. Kernel side: α = ``l2_alpha``
    is within ``l2_tol`` of the min-ℓ2 interpolant's rel err. The grid must hold rich_alpha, l2_alpha and an
    α strictly between them, and fails (missing) without them. Whether min-ℓ1 recovers w* (``l1_rel_err``)
    is reported, not judged: every rich check is against x_ℓ1. One seed per run."""
    del columns
    alphas, gd = list(context["alphas"]), context["gd_rel_err"]
    checks = []
    for a, gap, res in zip(alphas, context["gd_to_q"], context["residual"]):
        checks.append(check(f"gd_to_q_a{a:g}", gap, "<", max_gap, CALIBRATED))
        checks.append(check(f"residual_a{a:g}", res, "<=", max_residual, PRE_REGISTERED))
    if len(alphas) >= 2:
        steps = np.diff(np.asarray(context["l1_frac"], float)[np.argsort(alphas)])
        checks.append(check("min_l1_frac_increase", float(steps.min()), ">", 0.0, PRE_REGISTERED))
    checks += _kernel_rich_limit(context, max_limit_l1_excess, max_residual)
    missing = []
    i = _alpha_index(alphas, rich_alpha)
    if i is None:
        missing.append(f"α = {rich_alpha:g} (rich side) in implicit_bias.kernel_rich.alphas")
    else:
        checks.append(check(f"rich_l1_excess_a{rich_alpha:g}", context["l1_excess"][i], "<", max_rich_l1_excess,
                            PRE_REGISTERED, note="ℓ1 norm nearer min-ℓ1's than min-ℓ2's"))
    i = _alpha_index(alphas, l2_alpha)
    if i is None:
        missing.append(f"α = {l2_alpha:g} (min-ℓ2 side) in implicit_bias.kernel_rich.alphas")
    else:
        checks.append(check(f"l2_excess_a{l2_alpha:g}", abs(gd[i] - context["l2_rel_err"]), "<", l2_tol,
                            CALIBRATED))
    if not any(rich_alpha * (1 + 1e-9) < a < l2_alpha * (1 - 1e-9) for a in alphas):
        missing.append(f"an α between {rich_alpha:g} and {l2_alpha:g} (the transition) in "
                       "implicit_bias.kernel_rich.alphas")
    keys = ("alphas", "gd_rel_err", "q_rel_err", "gd_to_q", "residual", "l2_rel_err", "l1_rel_err", "l1_excess",
            "q_l1_excess", "l1_frac", "l2_frac", "q_l1_frac", "limit_alphas", "limit_l1_excess", "limit_l1_frac",
            "limit_residual", "gd_steps")
    return verdict(checks, {k: context[k] for k in keys if k in context}, missing)


def _kernel_rich_limit(context, max_limit_l1_excess: float, max_residual: float) -> list:
    """argmin Q_α at the smallest α of the oracle's ladder below the grid: near min-ℓ1 (l1_excess), solved."""
    if not context.get("limit_alphas"):
        return [check("limit_l1_excess", None, "<", max_limit_l1_excess, CALIBRATED, note="no α below the grid")]
    a, excess, res = context["limit_alphas"][-1], context["limit_l1_excess"][-1], context["limit_residual"][-1]
    return [check(f"limit_l1_excess_a{a:g}", excess, "<", max_limit_l1_excess, CALIBRATED),
            check(f"limit_residual_a{a:g}", res, "<=", max_residual, PRE_REGISTERED)]


@CLAIMS.register("margin")
def margin(columns, context, min_ratio: float = 0.88, max_linearity: float = 1e-2, min_cos: float = 0.97,
           min_contrast_linearity: float = 0.05) -> dict:
    """Per seed, small init: q/q* ≥ ``min_ratio`` (q* = (1 + α_leak)/4·γ_SVM), linearity <
    ``max_linearity``, cos(β, ŵ_SVM) ≥ ``min_cos``; the large-init contrast of the same run stays non-linear
    (linearity > ``min_contrast_linearity``). Pass fraction over the vmapped seeds."""
    del columns
    keys = ("ratio", "linearity", "cos", "contrast_linearity")
    per_seed = [[check("ratio", r, ">=", min_ratio, CALIBRATED),
                 check("linearity", lin, "<", max_linearity, CALIBRATED),
                 check("cos_svm", c, ">=", min_cos, CALIBRATED),
                 check("contrast_linearity", cl, ">", min_contrast_linearity, CALIBRATED)]
                for r, lin, c, cl in zip(*(context[k] for k in keys))]
    return _over_seeds(context, per_seed, {k: context[k] for k in (*keys, "contrast_ratio")})
