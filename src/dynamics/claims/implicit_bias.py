"""Verdicts of the implicit-bias experiments. Their numbers come from the run's ``context`` (per-seed and
per-model finals) and, for the flow comparison, from the logged rows at the check steps."""

import numpy as np

from dynamics.claims.base import CLAIMS, from_flags, missing_verdict


def _all(values, test) -> bool:
    values = list(values)
    return bool(values) and all(v is not None and np.isfinite(v) and test(v) for v in values)


@CLAIMS.register("label_noise")
def label_noise(columns, context, max_ln_rel_err: float = 0.1, min_gd_rel_err: float = 0.5,
                max_l1_rel_err: float = 1e-8) -> dict:
    """Label-noise GD (then clean GD) recovers the sparse w* on every seed (rel err < ``max_ln_rel_err``),
    plain GD from the same init does not (> ``min_gd_rel_err``); precondition: weighted-ℓ1-min
    interpolation recovers w* (< ``max_l1_rel_err``), so the problem is in the ℓ1-recoverable regime."""
    del columns
    ln, gd, l1 = context["ln_rel_err"], context["gd_rel_err"], context["l1_rel_err"]
    checks = {"label_noise_recovers": _all(ln, lambda v: v < max_ln_rel_err),
              "gd_does_not": _all(gd, lambda v: v > min_gd_rel_err),
              "precondition_l1_recovers": _all(l1, lambda v: v < max_l1_rel_err)}
    return from_flags(checks, {"seeds": context["seeds"], "ln_rel_err": ln, "gd_rel_err": gd, "l1_rel_err": l1,
            "ln_rel_err_max": float(np.max(ln)), "gd_rel_err_min": float(np.min(gd))})


@CLAIMS.register("label_noise_flow")
def label_noise_flow(columns, context, max_ratio: float = 0.15, control_min_ratio: float = 0.15) -> dict:
    """‖x̄_LN − x_flow‖ ≤ ``max_ratio`` × flow displacement at every check step, and the control flow
    (wrong constant) violates the same bound at some check step (the comparison discriminates)."""
    steps = columns["step"]
    idx = [int(np.flatnonzero(steps == s)[0]) for s in context["check_steps"]]
    ratio = [float(columns["ratio"][i]) for i in idx]
    control = [float(columns["control_ratio"][i]) for i in idx]
    checks = {"flow_matches": _all(ratio, lambda v: v <= max_ratio),
              "control_fails": bool(np.nanmax(control) > control_min_ratio) if np.any(np.isfinite(control))
              else False}
    return from_flags(checks, {"check_steps": context["check_steps"], "t": [float(columns["t"][i]) for i in idx], "ratio": ratio,
            "control_ratio": control, "distance": [float(columns["distance"][i]) for i in idx],
            "flow_displacement": [float(columns["flow_displacement"][i]) for i in idx],
            "c": context["c"]})


@CLAIMS.register("mirror_descent")
def mirror_descent(columns, context, min_ratio: float = 1.8, max_ratio: float = 2.2,
                   min_control_gap: float = 3e-2, max_commuting_bracket: float = 1e-10,
                   min_noncommuting_bracket: float = 0.1) -> dict:
    """gap(η)/gap(η/2) ∈ [``min_ratio``, ``max_ratio``] for each commuting model and halving; the control
    (non-commuting) fails it, with its gap at the smallest η above ``min_control_gap``; Lie brackets vanish
    for the diagonal models and not for UUᵀ, W₂W₁."""
    del columns
    gaps = context["gaps"]
    ratios = {name: [g[i] / g[i + 1] if g[i + 1] > 0 else float("inf") for i in range(len(g) - 1)]
              for name, g in gaps.items()}
    lie = context["lie_brackets"]
    checks = {
        "commuting_gap_is_O_eta": all(_all(ratios[m], lambda r: min_ratio <= r <= max_ratio)
                                      for m in context["commuting"]),
        "control_gap_does_not_shrink": all(_all(ratios[m], lambda r: r < min_ratio) and gaps[m][-1] > min_control_gap
                                           for m in context["control"]),
        "lie_brackets_vanish": _all([lie[m] for m in context["lie_commuting"]], lambda v: v < max_commuting_bracket),
        "lie_brackets_nonzero": _all([lie[m] for m in context["lie_noncommuting"]],
                                     lambda v: v > min_noncommuting_bracket),
    }
    return from_flags(checks, {"gaps": gaps, "ratios": ratios, "lie_brackets": lie, "lrs": context["lrs"],
            "control_lrs": context["control_lrs"]})


@CLAIMS.register("kernel_rich")
def kernel_rich(columns, context, max_gap: float = 5e-3, rich_alpha: float = 0.01, max_rich_rel_err: float = 0.15,
                kernel_alpha: float = 0.3, min_kernel_rel_err: float = 0.5, l2_tol: float = 0.01) -> dict:
    """GD from each α lands on argmin Q_α (‖x_GD − x_Q‖/‖w*‖ < ``max_gap``); rel err increases with α;
    small α is ℓ1-like (α = ``rich_alpha``: < ``max_rich_rel_err``), larger α is not (``kernel_alpha``: >
    ``min_kernel_rel_err``), and the largest α is within ``l2_tol`` of the min-ℓ2 interpolant's rel err."""
    del columns
    alphas, gd = context["alphas"], context["gd_rel_err"]
    order = np.argsort(alphas)
    sorted_err = np.asarray(gd)[order]
    by_alpha = dict(zip(alphas, gd))
    checks = {"gd_equals_argmin_Q": _all(context["gd_to_q"], lambda v: v < max_gap),
              "rel_err_increases_with_alpha": bool(np.all(np.diff(sorted_err) > 0)),
              "rich_limit": bool(rich_alpha not in by_alpha or by_alpha[rich_alpha] < max_rich_rel_err),
              "kernel_side": bool(kernel_alpha not in by_alpha or by_alpha[kernel_alpha] > min_kernel_rel_err),
              "largest_alpha_is_l2": bool(abs(sorted_err[-1] - context["l2_rel_err"]) < l2_tol)}
    return from_flags(checks, {"alphas": alphas, "gd_rel_err": gd, "q_rel_err": context["q_rel_err"], "gd_to_q": context["gd_to_q"],
            "l2_rel_err": context["l2_rel_err"], "l1_rel_err": context["l1_rel_err"]})


@CLAIMS.register("margin")
def margin(columns, context, min_ratio: float = 0.88, max_linearity: float = 1e-2, min_cos: float = 0.97,
           min_contrast_linearity: float = 0.05) -> dict:
    """Small init: q/q* ≥ ``min_ratio``, linearity < ``max_linearity``, cos(β, ŵ_SVM) ≥ ``min_cos`` on every
    seed; the large-init contrast stays non-linear (linearity > ``min_contrast_linearity``) on every seed."""
    del columns
    checks = {"margin_near_optimal": _all(context["ratio"], lambda v: v >= min_ratio),
              "linear": _all(context["linearity"], lambda v: v < max_linearity),
              "aligned_with_svm": _all(context["cos"], lambda v: v >= min_cos),
              "contrast_nonlinear": _all(context["contrast_linearity"], lambda v: v > min_contrast_linearity)}
    return from_flags(checks, {"seeds": context["seeds"], "ratio": context["ratio"], "linearity": context["linearity"],
            "cos": context["cos"], "contrast_ratio": context["contrast_ratio"],
            "contrast_linearity": context["contrast_linearity"]})
