"""NTK claims.

- ``ntk_width``: the empirical NTK of an NTK-parameterized MLP converges to the infinite-width NTK with
  relative error O(width^-1/2) (Jacot et al. 2018; fluctuations of the kernel are O(1/√width)).
- ``ntk_finetune``: fine-tuning a pre-trained model on a few-shot task follows its kernel solution
  (Malladi et al., ICML 2023): SGD the eNTK, Adam the asymmetric SignGD kernel.
- ``ntk_prompt``: with a meaningful prompt (label-word logits at [MASK]) the eNTK tracks GD fine-tuning
  of a pre-trained masked LM better than with a fresh classification head on [CLS] (Malladi et al.).
"""

import numpy as np

from dynamics.claims.base import CLAIMS, from_flags, missing_verdict


@CLAIMS.register("ntk_width")
def ntk_width(columns, context, *, slope_range=(-0.6, -0.4), max_final_error=0.1) -> dict:
    """Log-log least-squares slope of the mean relative error vs width, and the error at the widest.

    Numbers: ``widths``, ``errors`` (mean over seeds), ``slope`` and ``intercept`` (of
    log error = intercept + slope·log width), ``final_error``. Passed: ``slope`` in ``slope_range``
    and ``final_error < max_final_error``.
    """
    del context
    widths, errors = columns["width"], columns["rel_error"]
    keep = np.isfinite(widths) & np.isfinite(errors) & (errors > 0)
    widths, errors = widths[keep], errors[keep]
    if len(widths) < 2:
        return missing_verdict("two widths with a finite error",
                               {"widths": widths.tolist(), "errors": errors.tolist(), "slope": None})
    slope, intercept = np.polyfit(np.log(widths), np.log(errors), 1)
    final = float(errors[np.argmax(widths)])
    checks = {"slope_in_range": bool(slope_range[0] <= slope <= slope_range[1]),
              "final_error_below_max": final < max_final_error}
    return from_flags(checks, {"widths": [int(w) for w in widths], "errors": errors.tolist(), "slope": float(slope),
            "intercept": float(intercept), "final_error": final})


@CLAIMS.register("ntk_finetune")
def ntk_finetune(columns, context, *, min_agreement_sgd=0.8, min_agreement_adam=0.6,
                 max_kernel_change_sgd=0.4, max_acc_gap_sgd=0.05, max_acc_gap_adam=0.1) -> dict:
    """Fine-tuning vs kernel solutions, for every k in ``context["results"]``.

    Numbers per k (``k16``, …) and optimizer: fine-tuned and kernel test accuracies, ``agreement``
    (fraction of test examples with the same predicted class), ``kernel_change``
    ‖K(θ_T) − K(θ₀)‖/‖K(θ₀)‖, ``linearization_gap``, ``function_gap``. Passed, for every k:
    SGD agreement ≥ ``min_agreement_sgd``, |acc_FT − acc_eNTK| ≤ ``max_acc_gap_sgd``, SGD kernel change
    ≤ ``max_kernel_change_sgd``; Adam agreement ≥ ``min_agreement_adam`` and
    |acc_FT − acc_A-SignGD| ≤ ``max_acc_gap_adam``.
    """
    del columns
    results = context["results"]
    checks = {}
    for k, r in results.items():
        sgd, adam = r["sgd"], r["adam"]
        checks[f"{k}_sgd_agreement"] = sgd["agreement"] >= min_agreement_sgd
        checks[f"{k}_sgd_acc_gap"] = abs(sgd["ft_test_acc"] - sgd["kernel_test_acc"]) <= max_acc_gap_sgd
        checks[f"{k}_sgd_kernel_change"] = sgd["kernel_change"] <= max_kernel_change_sgd
        checks[f"{k}_adam_agreement"] = adam["agreement"] >= min_agreement_adam
        checks[f"{k}_adam_acc_gap"] = abs(adam["ft_test_acc"] - adam["kernel_test_acc"]) <= max_acc_gap_adam
    return from_flags(checks, {**results})


@CLAIMS.register("ntk_prompt")
def ntk_prompt(columns, context, *, max_gap_ratio=0.75, max_kernel_change_ratio=0.5,
               min_agreement_margin=0.0, min_agreement_prompt=0.9,
               min_kernel_acc_prompt=0.75) -> dict:
    """Prompt vs head: how well the eNTK (kernel GD) tracks GD fine-tuning, for every k.

    Judged on the classification margin m = f_great − f_terrible, the part of the two outputs that
    the cross-entropy loss and the predicted class depend on. Numbers per k (``k16``, …), variant
    (``prompt``, ``head``) and optimizer (``sgd`` = full-batch GD vs kernel GD, ``adam`` vs A-SignGD
    regression): accuracies, ``agreement``, ``margin_function_gap`` ‖m_FT − m_kernel‖/‖m_FT − m₀‖,
    ``margin_kernel_change`` ‖K_m(θ_T) − K_m(θ₀)‖/‖K_m(θ₀)‖, ``margin_linearization_gap``, and the same
    three on both logits (``function_gap``, ``kernel_change``, ``linearization_gap``); ``gap_ratio`` and
    ``kernel_change_ratio`` = prompt / head (GD). Passed, for every k (GD only; Adam is reported):
    ``gap_ratio`` ≤ ``max_gap_ratio``; ``kernel_change_ratio`` ≤ ``max_kernel_change_ratio``; prompt
    agreement ≥ head agreement + ``min_agreement_margin`` and ≥ ``min_agreement_prompt``; prompt kernel
    test accuracy ≥ ``min_kernel_acc_prompt`` (chance is 0.5).
    """
    del columns
    results = context["results"]
    checks, gap_ratio, change_ratio = {}, {}, {}
    for k, r in results.items():
        prompt, head = r["prompt"]["sgd"], r["head"]["sgd"]
        gap_ratio[k] = prompt["margin_function_gap"] / head["margin_function_gap"]
        change_ratio[k] = prompt["margin_kernel_change"] / head["margin_kernel_change"]
        checks[f"{k}_gap_ratio"] = bool(gap_ratio[k] <= max_gap_ratio)
        checks[f"{k}_kernel_change_ratio"] = bool(change_ratio[k] <= max_kernel_change_ratio)
        checks[f"{k}_agreement_above_head"] = bool(
            prompt["agreement"] >= head["agreement"] + min_agreement_margin)
        checks[f"{k}_agreement_prompt"] = bool(prompt["agreement"] >= min_agreement_prompt)
        checks[f"{k}_kernel_acc_prompt"] = bool(prompt["kernel_test_acc"] >= min_kernel_acc_prompt)
    return from_flags(checks, {**results, "gap_ratio": gap_ratio, "kernel_change_ratio": change_ratio})
