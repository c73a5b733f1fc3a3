"""NTK claims.

- ``ntk_width``: the empirical NTK of an NTK-parameterized MLP converges to the infinite-width NTK with
  relative error O(width^-1/2) (Jacot et al. 2018; fluctuations of the kernel are O(1/√width)).
- ``ntk_finetune``: fine-tuning a pre-trained model on a few-shot task follows its kernel solution
  (Malladi et al., ICML 2023): SGD the eNTK, Adam the asymmetric SignGD kernel.
"""

import numpy as np

from dynamics.verdicts.base import VERDICTS


@VERDICTS.register("ntk_width")
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
        return {"widths": widths.tolist(), "errors": errors.tolist(), "slope": None, "passed": False}
    slope, intercept = np.polyfit(np.log(widths), np.log(errors), 1)
    final = float(errors[np.argmax(widths)])
    checks = {"slope_in_range": bool(slope_range[0] <= slope <= slope_range[1]),
              "final_error_below_max": final < max_final_error}
    return {"widths": [int(w) for w in widths], "errors": errors.tolist(), "slope": float(slope),
            "intercept": float(intercept), "final_error": final, "checks": checks,
            "passed": all(checks.values())}


@VERDICTS.register("ntk_finetune")
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
    return {**results, "checks": checks, "passed": all(checks.values())}
