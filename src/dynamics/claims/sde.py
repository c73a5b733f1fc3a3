"""SDE claims (papers/sde.md): SDEs approximate SGD/RMSprop/Adam; SVAG converges; the √ scaling rule.

- ``sde_quadratic``: on noisy quadratics the Monte Carlo of discrete SGD and of the SGD SDE agree with
  their closed forms; the weak error shrinks as η → 0 (ratio of the errors at η and η/2) for SGD,
  RMSprop and Adam; on the NQM the square-root rule keeps the loss curve within ``sqrt_tol`` and the
  linear rule is off by ≥ ``linear_min_gap`` for RMSprop/Adam; SGD's linear rule stays within
  ``sqrt_tol``; the base floor matches the closed form; the low-noise control breaks the √ rule.
- ``svag_ladder`` (a sweep verdict, from ``experiments/svag/analyze.py``): the distance between the
  expected curves of consecutive ℓ shrinks as ℓ grows, judged against its standard error.
- ``scaling_rule`` (a sweep verdict, from ``experiments/sqrt_scaling/analyze.py``): the √ rule keeps
  RMSprop/Adam within ``tol`` of the base curve, the linear rule departs, SGD's linear rule holds.

Sweep verdicts take their numbers in ``context`` (they compare runs, not rows of one run).
"""

from dynamics.claims.base import CLAIMS, from_flags, missing_verdict


@CLAIMS.register("sde_quadratic")
def sde_quadratic(columns, context, *, max_z=5.0, min_ratio=1.5, sqrt_tol=0.05,
                  linear_min_gap=0.3, floor_tol=0.05, control_min_gap=0.3) -> dict:
    """Numbers: part-1 z-scores and weak-error ratios, part-2 ratios, part-3 max deviations.

    Passed when every check holds:
    - ``sgd_mc_matches_closed_forms``: |MC − closed form| ≤ ``max_z`` SE for the discrete loss curve,
      the Euler–Maruyama loss curve and the discrete variance at T, at both η;
    - ``sgd_weak_error_shrinks``: weak-error ratio (η vs η/2) ≥ ``min_ratio`` in the closed forms and
      in the Monte Carlo;
    - ``{rmsprop,adam}_weak_error_shrinks``: ratio ≥ ``min_ratio`` and err(η) > ``max_z``·SE (the
      larger error is resolved by the Monte Carlo);
    - ``sqrt_rule_holds``: every RMSprop/Adam √-rule run within ``sqrt_tol``;
    - ``linear_rule_fails``: every RMSprop/Adam linear-rule run off by ≥ ``linear_min_gap``;
    - ``sgd_linear_rule_holds``: SGD's linear-rule runs within ``sqrt_tol``;
    - ``floor_matches``: base floors within ``floor_tol`` of (η/4)Σ Var/(√Var + ε) (RMSprop: times
      (1 − β2^k)^(-1/2), optax's rmsprop has no bias correction; SGD: the discrete chain Σ ηs/(2(2 − ηh)));
    - ``control_breaks_sqrt_rule``: the low-noise control's deviation ≥ ``control_min_gap``.
    """
    del columns
    sgd, adaptive, scaling = context["sgd"], context["adaptive"], context["scaling"]
    z = max(max(lv["z_discrete"], lv["z_sde"], lv["z_var_discrete"]) for lv in sgd["levels"])
    runs = scaling["runs"]

    def devs(case, rule):
        return [r["max_deviation"] for r in runs if r["case"] == case and r["rule"] == rule]

    sqrt_devs = devs("adam", "sqrt") + devs("rmsprop", "sqrt")
    linear_devs = devs("adam", "linear") + devs("rmsprop", "linear")
    sgd_devs, control_devs = devs("sgd", "linear"), devs("control", "sqrt")
    floors = {k[len("floor_"):]: v["rel_error"] for k, v in scaling.items() if k.startswith("floor_")}
    numbers = {
        "sgd_max_z": z,
        "sgd_weak_errors_exact": [lv["weak_error_exact"] for lv in sgd["levels"]],
        "sgd_weak_errors_mc": [lv["weak_error_mc"] for lv in sgd["levels"]],
        "sgd_weak_error_ratio_exact": sgd["weak_error_ratio_exact"],
        "sgd_weak_error_ratio_mc": sgd["weak_error_ratio_mc"],
        **{f"{name}_weak_errors": [lv["weak_error"] for lv in adaptive[name]["levels"]]
           for name in adaptive},
        **{f"{name}_weak_error_ses": [lv["se"] for lv in adaptive[name]["levels"]]
           for name in adaptive},
        **{f"{name}_weak_error_ratio": adaptive[name]["weak_error_ratio"] for name in adaptive},
        "sqrt_rule_max_deviation": max(sqrt_devs),
        "linear_rule_min_deviation": min(linear_devs),
        "sgd_linear_rule_max_deviation": max(sgd_devs),
        "control_min_deviation": min(control_devs),
        "floor_rel_errors": floors,
    }
    checks = {
        "sgd_mc_matches_closed_forms": bool(z <= max_z),
        "sgd_weak_error_shrinks": bool(sgd["weak_error_ratio_exact"] >= min_ratio
                                       and sgd["weak_error_ratio_mc"] >= min_ratio),
        **{f"{name}_weak_error_shrinks": bool(
            adaptive[name]["weak_error_ratio"] >= min_ratio
            and adaptive[name]["levels"][0]["weak_error"] > max_z * adaptive[name]["levels"][0]["se"])
           for name in adaptive},
        "sqrt_rule_holds": bool(max(sqrt_devs) <= sqrt_tol),
        "linear_rule_fails": bool(min(linear_devs) >= linear_min_gap),
        "sgd_linear_rule_holds": bool(max(sgd_devs) <= sqrt_tol),
        "floor_matches": bool(max(floors.values()) <= floor_tol),
        "control_breaks_sqrt_rule": bool(min(control_devs) >= control_min_gap),
    }
    return from_flags(checks, {**numbers})


@CLAIMS.register("svag_ladder")
def svag_ladder(columns, context, *, z=2.0) -> dict:
    """Sweep verdict: per optimizer, distances d(ℓ, 2ℓ) between the expected curves of consecutive ℓ.

    ``context["gaps"]`` maps an optimizer to ``{metric: [pair, ...]}`` for the pairs (1,2), (2,4),
    (4,8), each ``{"d2": unbiased estimate of d², "d2_se": its standard error}`` (experiments/svag/
    analyze.py). Two d² differ *resolvably* when they differ by more than ``z`` combined SEs. Per
    metric the status is

    - ``grows``: some later d² is resolvably above an earlier one (evidence against convergence);
    - ``shrinks``: not ``grows``, d²(1,2) is above every later d² and resolvably above the last;
    - ``inconclusive``: neither (e.g. the curves agree within noise already at ℓ = 1).

    Passed when no metric grows and every optimizer has at least one metric that shrinks (so the check
    is not vacuous).
    """
    del columns
    checks, status = {}, {}
    for opt, metrics in context["gaps"].items():
        shrinking = []
        for metric, pairs in metrics.items():
            d2 = [p["d2"] for p in pairs]
            se = [p["d2_se"] for p in pairs]

            def above(k, j):  # d²[k] resolvably above d²[j]
                return d2[k] - d2[j] > z * (se[k] ** 2 + se[j] ** 2) ** 0.5

            grows = any(above(k, j) for k in range(len(d2)) for j in range(k))
            shrinks = (not grows and len(d2) >= 2 and all(d2[0] > x for x in d2[1:])
                       and above(0, len(d2) - 1))
            status[f"{opt}/{metric}"] = "grows" if grows else "shrinks" if shrinks else "inconclusive"
            checks[f"{opt}_{metric}_does_not_grow"] = not grows
            shrinking.append(shrinks)
        checks[f"{opt}_has_a_shrinking_metric"] = any(shrinking)
    return from_flags(checks, {"gaps": context["gaps"], "z": z, "status": status})


@CLAIMS.register("scaling_rule")
def scaling_rule(columns, context, *, tol=0.1, linear_min_ratio=2.0) -> dict:
    """Sweep verdict: max relative gaps to the base curve (κ = 1) per optimizer, rule and κ.

    ``context["gaps"]`` maps ``"<optimizer>/<rule>"`` to ``{kappa: gap}``. Passed when every
    RMSprop/Adam √-rule gap ≤ ``tol``, every SGD linear-rule gap ≤ ``tol``, and at the smallest κ the
    RMSprop/Adam linear-rule gap is ≥ ``linear_min_ratio`` × the √-rule gap and > ``tol``.
    """
    del columns
    gaps = context["gaps"]
    checks = {}
    for key, by_kappa in gaps.items():
        opt, rule = key.split("/")
        if (opt != "gd" and rule == "sqrt") or (opt == "gd" and rule == "linear"):
            checks[f"{opt}_{rule}_within_tol"] = bool(max(by_kappa.values()) <= tol)
        if opt != "gd" and rule == "linear" and f"{opt}/sqrt" in gaps:
            k = min(by_kappa)
            lin, sq = by_kappa[k], gaps[f"{opt}/sqrt"][k]
            checks[f"{opt}_linear_departs"] = bool(lin > tol and lin >= linear_min_ratio * sq)
    return from_flags(checks, {"gaps": gaps, "tol": tol})
