"""Edge of stability: a curvature measure rises to the optimizer's stability threshold and hovers there.

Which curvature and which threshold depend on the optimizer (papers/eos.md §0.2):

| optimizer | metric | threshold |
|---|---|---|
| gd | ``sharpness`` λ_max(H) | 2/η |
| momentum (heavy ball) | ``sharpness`` | (2 + 2β)/η |
| nesterov | ``sharpness`` | (2 + 2β)/((1 + 2β)η) |
| adam, adamw | ``precond_sharpness`` λ_max(P⁻¹H) | (2 + 2β1)/((1 − β1)η) = 38/η at β1 = 0.9 |
| rmsprop | ``precond_sharpness`` | 2/η |
| normalized_gd | ``sharpness`` | 2/η_t with η_t = η/‖∇L(θ_t)‖, per step |
"""

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from dynamics.curvature import adam_threshold, gd_threshold, heavy_ball_threshold, nesterov_threshold
from dynamics.errors import ConfigError
from dynamics.registry import Registry
from dynamics.verdicts.base import VERDICTS


class Stability(NamedTuple):
    """The metric that equilibrates and its threshold: a function of (hparams, columns) that
    returns a number or one value per logged row."""

    metric: str
    threshold: Callable[[dict, dict], float | np.ndarray]
    label: str


THRESHOLDS: Registry[Stability] = Registry("stability threshold", "optimizer.name")
THRESHOLDS.register("gd")(Stability("sharpness", lambda h, c: gd_threshold(h["learning_rate"]), "2/η"))
THRESHOLDS.register("momentum")(Stability(
    "sharpness", lambda h, c: heavy_ball_threshold(h["learning_rate"], h["momentum"]), "(2+2β)/η"))
THRESHOLDS.register("nesterov")(Stability(
    "sharpness", lambda h, c: nesterov_threshold(h["learning_rate"], h["momentum"]),
    "(2+2β)/((1+2β)η)"))
for _name in ("adam", "adamw"):
    THRESHOLDS.register(_name)(Stability(
        "precond_sharpness", lambda h, c: adam_threshold(h["learning_rate"], h["b1"]),
        "(2+2β1)/((1−β1)η)"))
THRESHOLDS.register("rmsprop")(Stability(
    "precond_sharpness", lambda h, c: gd_threshold(h["learning_rate"]), "2/η"))
THRESHOLDS.register("normalized_gd")(Stability(
    "sharpness", lambda h, c: 2.0 * c["grad_norm"] / h["learning_rate"], "2/η_t"))


def stability_threshold(optimizer: str, hparams: dict, columns: dict | None = None):
    """The optimizer's stability threshold (a number, or per-row values for normalized GD)."""
    return THRESHOLDS.get(optimizer).threshold(hparams, columns or {})


def _rise_fraction(loss: np.ndarray) -> float:
    loss = loss[np.isfinite(loss)]
    return float(np.mean(np.diff(loss) > 0)) if loss.size > 1 else float("nan")


def crossing_and_ratio(columns, context):
    """``(metric, threshold, first index at/above it or None, ratio metric/threshold per row)``."""
    stability = THRESHOLDS.get(context["optimizer"])
    if stability.metric not in columns:
        raise ConfigError(f"probes.{stability.metric}.every=0 is invalid for this verdict with "
                          f"optimizer {context['optimizer']!r}: allowed a positive multiple of "
                          "train.chunk")
    threshold = np.broadcast_to(stability.threshold(context["hparams"], columns),
                                columns["step"].shape)
    ratio = columns[stability.metric] / threshold
    above = np.isfinite(ratio) & (ratio >= 1.0)
    first = int(np.argmax(above)) if above.any() else None
    return stability.metric, threshold, first, ratio


def hover_stats(ratio: np.ndarray, first: int) -> dict:
    """Median, 5th/95th percentile and max of ``ratio`` (metric/threshold) from index ``first`` on."""
    after = ratio[first:][np.isfinite(ratio[first:])]
    return {"ratio_median": float(np.median(after)), "ratio_p05": float(np.percentile(after, 5)),
            "ratio_p95": float(np.percentile(after, 95)), "ratio_max": float(np.max(after))}


@VERDICTS.register("eos")
def edge_of_stability(columns, context, *, median_range=(1.0, 1.1), p95_max=1.25,
                      min_rise_after=0.2, max_rise_before=0.01, expected_crossing=None,
                      crossing_tolerance=0.2) -> dict:
    """Numbers of the EoS claim and whether they meet the criteria of experiments/eos/README.md.

    - ``crossing_step``: first measured step with the metric ≥ threshold (table above).
    - ``ratio_median`` / ``ratio_p05`` / ``ratio_p95`` / ``ratio_max``: metric/threshold after it.
    - ``loss_rise_before`` / ``loss_rise_after``: fraction of consecutive logged pairs whose
      loss went up, among the pairs strictly before the crossing step / from it on.
    - ``final_loss_below_crossing``: the last loss is below the loss at the crossing.
    Passed: a crossing happened (within ``crossing_tolerance`` of ``expected_crossing`` if given), the
    median ratio lies in ``median_range``, the 95th percentile is below ``p95_max``, the loss rose on at
    least ``min_rise_after`` of the steps after and on less than ``max_rise_before`` before, and the final
    loss is below the loss at crossing.
    """
    metric, threshold, first, ratio = crossing_and_ratio(columns, context)
    measured = np.isfinite(ratio)
    out = {"metric": metric, "threshold": float(np.median(threshold[measured]))
           if measured.any() else None}
    if not measured.any():
        return {**out, "crossing_step": None, "passed": False}
    values = columns[metric][measured]
    out.update(initial_value=float(values[0]), max_value=float(np.max(values)))
    if first is None:
        return {**out, "crossing_step": None, "passed": False}
    step, loss = columns["step"], columns["loss"]
    crossing = int(step[first])
    after, before = loss[first:], loss[:first]
    out.update(
        crossing_step=crossing,
        **hover_stats(ratio, first),
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
