"""NTK claims.

- ``ntk_width``: the empirical NTK of an NTK-parameterized MLP converges to the infinite-width NTK with
  relative error O(width^-1/2) (Jacot et al. 2018; fluctuations of the kernel are O(1/√width)).
- ``ntk_finetune``: fine-tuning a pre-trained model on a few-shot task follows kernel dynamics around
  the pre-trained weights (Malladi et al., ICML 2023): GD eNTK kernel GD; Adam, in the regime where the
  paper derives it (SignGD limit, scalar output, one example per step, small steps), the asymmetric
  SignGD kernel's dynamics; each judged by the function gap ‖f_FT − f_kernel‖/‖f_FT − f₀‖ against its
  baselines: f₀ (gap 1) and, for Adam, the same dynamics with the eNTK.
- ``ntk_prompt``: with a meaningful prompt (label-word logits at [MASK]) the eNTK tracks GD fine-tuning
  of a pre-trained masked LM better than with a fresh classification head on [CLS], at matched movement
  of the margin (Malladi et al.).

Each is judged per seed here; the seeds are combined by ``claims.seeds.aggregate`` (``claim.seeds``),
except ``ntk_width``, whose networks are its seeds (the mean slope with its standard error).
"""

import numpy as np

from dynamics.claims.base import CALIBRATED, CLAIMS, PRE_REGISTERED, check, missing_verdict, verdict


@CLAIMS.register("ntk_width")
def ntk_width(columns, context, *, slope_range=(-0.6, -0.4), max_final_error=0.1) -> dict:
    """The mean over networks of the per-network log-log slope of the error vs width, and the mean
    error at the largest width.

    Aggregate: ``slope`` = mean of ``context["slopes"]`` (one least-squares slope per network seed),
    ``slope_se`` its standard error. Checks: ``slope`` in ``slope_range`` (theory −1/2, pre-registered
    band ±0.1), ``final_error`` < ``max_final_error`` (calibrated).
    """
    widths, errors = columns.get("width", np.array([])), columns.get("rel_error", np.array([]))
    keep = np.isfinite(widths) & np.isfinite(errors) & (errors > 0)
    widths, errors = widths[keep], errors[keep]
    slopes = np.asarray(context.get("slopes") or [], float)
    slopes = slopes[np.isfinite(slopes)]
    numbers = {"widths": [int(w) for w in widths], "errors": errors.tolist(), "slopes": slopes.tolist()}
    if len(widths) < 2 or slopes.size < 2:
        return missing_verdict("two widths with a finite error and two network seeds", numbers)
    slope = float(slopes.mean())
    se = float(slopes.std(ddof=1) / np.sqrt(slopes.size))
    final = float(errors[np.argmax(widths)])
    checks = [check("slope", slope, "in", tuple(slope_range), PRE_REGISTERED,
                    note=f"mean of {slopes.size} network slopes, SE {se:.3g}"),
              check("final_error", final, "<", max_final_error, CALIBRATED)]
    return verdict(checks, {**numbers, "slope": slope, "slope_se": se, "final_error": final,
                            "aggregate": f"mean ± SE of the log-log slope over {slopes.size} networks"})


def _results(context) -> dict:
    return context.get("results") or {}


@CLAIMS.register("ntk_finetune")
def ntk_finetune(columns, context, *, optimizers=("sgd", "adam"), max_function_gap_sgd=0.5,
                 max_kernel_change_sgd=0.4, max_function_gap_adam=0.15, max_adam_gap_ratio=1.0) -> dict:
    """Fine-tuning vs kernel dynamics, for every k in ``context["results"]``, on the function gap.

    Checks per k (``k16``, …):
    - ``{k}_sgd_function_gap``: GD's gap to eNTK kernel GD ≤ ``max_function_gap_sgd`` (calibrated;
      f₀ has gap 1);
    - ``{k}_sgd_kernel_change``: ‖K(θ_T) − K(θ₀)‖/‖K(θ₀)‖ ≤ ``max_kernel_change_sgd`` (calibrated);
    - ``{k}_adam_function_gap``: per-example Adam's gap (binary sub-task, the A-SignGD kernel's regime)
      to the A-SignGD kernel dynamics ≤ ``max_function_gap_adam`` = 0.15 (calibrated, seeds 0–4: at most
      0.071; f₀ has gap 1);
    - ``{k}_adam_gap_vs_entk``: that gap / Adam's gap to the same dynamics with the eNTK at its best
      fitted rate < ``max_adam_gap_ratio`` = 1 (pre-registered: A-SignGD explains Adam better).
    ``optimizers`` names the halves judged (``sgd``, ``adam``; both by default). Accuracies and
    agreements are reported, not judged.
    """
    del columns
    results = _results(context)
    if not results or not optimizers or set(optimizers) - {"sgd", "adam"}:
        return missing_verdict("k-shot results" if not results else "optimizers among sgd, adam")
    checks, ratios, missing = [], {}, []
    gap_source = PRE_REGISTERED if max_function_gap_adam >= 1 else CALIBRATED
    for k, r in results.items():
        sgd, adam = r.get("sgd") or {}, r.get("adam") or {}
        if "sgd" in optimizers:
            checks.append(check(f"{k}_sgd_function_gap", sgd.get("function_gap"), "<=", max_function_gap_sgd,
                                CALIBRATED, note="f₀ has gap 1"))
            checks.append(check(f"{k}_sgd_kernel_change", sgd.get("kernel_change"), "<=",
                                max_kernel_change_sgd, CALIBRATED))
        if "adam" not in optimizers:
            continue
        if "entk_function_gap" not in adam:
            missing.append(f"{k} Adam's eNTK baseline")
        checks.append(check(f"{k}_adam_function_gap", adam.get("function_gap"), "<=", max_function_gap_adam,
                            gap_source, note="A-SignGD kernel dynamics; f₀ has gap 1"))
        base = adam.get("entk_function_gap")
        ratios[k] = None if not base or adam.get("function_gap") is None else adam["function_gap"] / base
        checks.append(check(f"{k}_adam_gap_vs_entk", ratios[k], "<", max_adam_gap_ratio, PRE_REGISTERED,
                            note="Adam's gap to A-SignGD / to the eNTK dynamics at its best-fitting rate"))
    return verdict(checks, {**results, "adam_gap_ratio": ratios}, missing)


@CLAIMS.register("ntk_prompt")
def ntk_prompt(columns, context, *, max_gap_ratio=1.0, max_prompt_gap=1.0,
               movement_ratio_range=(0.67, 1.5), max_kernel_change_ratio=1.0) -> dict:
    """Prompt vs head at matched movement: how well eNTK kernel GD tracks GD fine-tuning, for every k.

    Judged on the classification margin m = f_great − f_terrible (what the cross-entropy and the
    predicted class depend on), GD only (Adam vs A-SignGD is reported). Each variant is fine-tuned until
    the RMS change of its training margins reaches the same target. Checks per k (``k16``, …):
    - ``{k}_movement_ratio``: prompt / head test-margin movement in ``movement_ratio_range``
      (pre-registered: the comparison is at matched movement);
    - ``{k}_prompt_gap``: the prompt's margin gap ‖m_FT − m_kernel‖/‖m_FT − m₀‖ < ``max_prompt_gap``
      = 1 (pre-registered: beats f₀);
    - ``{k}_gap_ratio``: prompt / head margin gap < ``max_gap_ratio`` (pre-registered direction, 1);
    - ``{k}_kernel_change_ratio``: prompt / head margin-kernel change < ``max_kernel_change_ratio``
      (pre-registered direction, 1).
    A variant that did not reach the movement target is missing evidence.
    """
    del columns
    results = _results(context)
    if not results:
        return missing_verdict("k-shot results")
    checks, missing, ratios = [], [], {"gap_ratio": {}, "kernel_change_ratio": {}, "movement_ratio": {}}
    for k, r in results.items():
        prompt, head = (r.get(v, {}).get("sgd") or {} for v in ("prompt", "head"))
        for v, run in (("prompt", prompt), ("head", head)):
            if not run.get("reached_movement"):
                missing.append(f"{k} {v} reaching the movement target")

        def ratio(key):
            a, b = prompt.get(key), head.get(key)
            return None if a is None or not b else a / b

        for name, key in (("gap_ratio", "margin_function_gap"), ("kernel_change_ratio", "margin_kernel_change"),
                          ("movement_ratio", "margin_moved")):
            ratios[name][k] = ratio(key)
        checks += [
            check(f"{k}_movement_ratio", ratios["movement_ratio"][k], "in", tuple(movement_ratio_range),
                  PRE_REGISTERED, note="test-margin movement, prompt / head"),
            check(f"{k}_prompt_gap", prompt.get("margin_function_gap"), "<", max_prompt_gap, PRE_REGISTERED,
                  note="f₀ has gap 1"),
            check(f"{k}_gap_ratio", ratios["gap_ratio"][k], "<", max_gap_ratio, PRE_REGISTERED),
            check(f"{k}_kernel_change_ratio", ratios["kernel_change_ratio"][k], "<", max_kernel_change_ratio,
                  PRE_REGISTERED),
        ]
    return verdict(checks, {**results, **ratios}, missing)
