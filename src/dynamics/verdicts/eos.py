"""Edge of stability (Cohen et al. 2021): sharpness rises to the stability threshold and hovers there."""

import numpy as np

from dynamics.errors import ConfigError
from dynamics.registry import Registry
from dynamics.verdicts.base import VERDICTS

# Largest curvature on which the optimizer is stable on a quadratic (papers/eos.md §0.2).
THRESHOLDS = Registry("stability threshold", "optimizer.name")
THRESHOLDS.register("gd")(lambda h: 2.0 / h["learning_rate"])
THRESHOLDS.register("momentum")(lambda h: (2.0 + 2.0 * h["momentum"]) / h["learning_rate"])
THRESHOLDS.register("nesterov")(lambda h: (2.0 + 2.0 * h["momentum"]) / h["learning_rate"])


def stability_threshold(optimizer: str, hparams: dict) -> float:
    """2/η for GD, (2 + 2β)/η for heavy-ball momentum."""
    return float(THRESHOLDS.get(optimizer)(hparams))


def _rise_fraction(loss: np.ndarray) -> float:
    loss = loss[np.isfinite(loss)]
    return float(np.mean(np.diff(loss) > 0)) if loss.size > 1 else float("nan")


@VERDICTS.register("eos")
def edge_of_stability(columns, context, *, median_range=(1.0, 1.1), p95_max=1.25,
                      min_rise_after=0.2, max_rise_before=0.01, expected_crossing=None,
                      crossing_tolerance=0.2) -> dict:
    """Numbers of the EoS claim and whether they meet the criteria of experiments/eos/README.md.

    - ``crossing_step``: first measured step with sharpness ≥ threshold (2/η for GD).
    - ``ratio_median`` / ``ratio_p05`` / ``ratio_p95`` / ``ratio_max``: sharpness/threshold after it.
    - ``loss_rise_before`` / ``loss_rise_after``: fraction of consecutive logged pairs whose
      loss went up, among the pairs strictly before the crossing step / from it on.
    - ``final_loss_below_crossing``: the last loss is below the loss at the crossing.
    Passed: a crossing happened (within ``crossing_tolerance`` of ``expected_crossing`` if given), the
    median ratio lies in ``median_range``, the 95th percentile is below ``p95_max``, the loss rose on at
    least ``min_rise_after`` of the steps after and on less than ``max_rise_before`` before, and the final
    loss is below the loss at crossing.
    """
    if "sharpness" not in columns:
        raise ConfigError("probes.sharpness.every=0 is invalid for verdict 'eos': allowed a positive "
                          "multiple of train.chunk")
    threshold = stability_threshold(context["optimizer"], context["hparams"])
    step, loss, sharp = columns["step"], columns["loss"], columns["sharpness"]
    measured = np.isfinite(sharp)
    above = measured & (sharp >= threshold)
    if not measured.any():
        return {"threshold": threshold, "crossing_step": None, "passed": False}
    out = {"threshold": threshold, "initial_sharpness": float(sharp[measured][0]),
           "max_sharpness": float(np.max(sharp[measured]))}
    if not above.any():
        return {**out, "crossing_step": None, "passed": False}
    first = int(np.argmax(above))
    crossing = int(step[first])
    ratio = sharp[first:][measured[first:]] / threshold
    after, before = loss[first:], loss[:first]
    out.update(
        crossing_step=crossing,
        ratio_median=float(np.median(ratio)),
        ratio_p05=float(np.percentile(ratio, 5)),
        ratio_p95=float(np.percentile(ratio, 95)),
        ratio_max=float(np.max(ratio)),
        loss_rise_before=_rise_fraction(before),
        loss_rise_after=_rise_fraction(after),
        loss_at_crossing=float(loss[first]),
        final_loss=float(after[np.isfinite(after)][-1]),
    )
    checks = {
        "median_in_range": median_range[0] <= out["ratio_median"] <= median_range[1],
        "p95_below_max": out["ratio_p95"] < p95_max,
        "loss_rises_after": out["loss_rise_after"] >= min_rise_after,
        "loss_monotone_before": out["loss_rise_before"] < max_rise_before,
        "final_loss_below_crossing": out["final_loss"] < out["loss_at_crossing"],
    }
    if expected_crossing is not None:
        checks["crossing_near_expected"] = (
            abs(crossing - expected_crossing) <= crossing_tolerance * expected_crossing)
    return {**out, "checks": checks, "passed": all(checks.values())}
