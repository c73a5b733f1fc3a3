"""Edge of stability followed by sharpness reduction.

- ``eos_flow``: normalized GD and GD on √L (Arora, Li, Panigrahi, ICML 2022) provably enter the edge of
  stability and then drift along the manifold of minimizers in the direction that decreases
  λ_max(∇²L): the stability metric hovers at its threshold while λ_max(∇²L) falls.
- ``spherical_eos``: GD with weight decay on a scale-invariant net (Lyu, Li, Arora, NeurIPS 2022):
  η_eff·λ_max(∇²L(θ/‖θ‖)) with η_eff = η/‖θ‖² settles near 2, then the spherical sharpness decreases.
"""

import numpy as np

from dynamics.errors import ConfigError
from dynamics.claims.base import CALIBRATED, CLAIMS, PRE_REGISTERED, check, verdict
from dynamics.claims.eos import THRESHOLDS, crossing_and_ratio, hover_stats, reached


def _require(columns, metric, probe):
    if metric not in columns or not np.isfinite(columns[metric]).any():
        raise ConfigError(f"probes.{probe}.every=0 is invalid for this verdict: allowed a positive "
                          "multiple of train.chunk")


def _reduction(columns, metric, start: int) -> dict:
    """How much ``metric`` fell over the edge-of-stability phase (from row ``start`` on).

    ``early`` / ``late``: medians of the first and last quarter of the measurements after ``start``;
    ``reduction = 1 − late/early``. Medians over quarters rather than peak-to-final, so the overshoot
    right after the crossing (which plain GD shows too) does not count as a reduction. The peak and the
    final value are reported as well.
    """
    values, steps = columns[metric][start:], columns["step"][start:]
    measured = np.isfinite(values)
    values, steps = values[measured], steps[measured]
    quarter = max(1, len(values) // 4)
    early, late = float(np.median(values[:quarter])), float(np.median(values[-quarter:]))
    peak = int(np.argmax(values))
    return {"reduced_metric": metric, "peak_value": float(values[peak]), "peak_step": int(steps[peak]),
            "final_value": float(values[-1]), "early_median": early, "late_median": late,
            "reduction": float(1 - late / early) if len(values) >= 4 else float("nan")}


@CLAIMS.register("eos_flow")
def eos_flow(columns, context, *, reduced_metric="sharpness", median_range=(0.97, 1.1),
             p95_max=1.25, min_reduction=0.1) -> dict:
    """Crossing and hover as in ``eos``, then ``reduced_metric`` falls by ``min_reduction`` or more.

    Numbers: ``crossing_step``, ``ratio_*`` (metric/threshold from the crossing on), ``peak_value`` and
    ``peak_step`` of ``reduced_metric`` (λ_max(∇²L): ``sharpness`` for normalized GD,
    ``loss_sharpness`` for GD on √L) from the crossing on, ``final_value`` and
    ``reduction = 1 − late/early`` (medians of the last and first quarter of the measurements after the
    crossing). Passed: crossing, median ratio in ``median_range``, 95th percentile below ``p95_max``,
    ``reduction ≥ min_reduction``. Control: plain GD at the edge of stability hovers at a constant
    2/η, so its λ_max does not fall (reduction ≈ 0).
    """
    _require(columns, reduced_metric, reduced_metric)
    metric, threshold, first, ratio = crossing_and_ratio(columns, context)
    reach, peak = reached(metric, first, ratio, THRESHOLDS.get(context["optimizer"]).label_for(context["hparams"]))
    if first is None:
        return verdict([reach], {"metric": metric, "crossing_step": None, "ratio_peak": peak})
    out = {"metric": metric, "crossing_step": int(columns["step"][first]),
           **hover_stats(ratio, first), **_reduction(columns, reduced_metric, first)}
    checks = [
        reach,
        check("ratio_median", out["ratio_median"], "in", median_range, PRE_REGISTERED),
        check("ratio_p95", out["ratio_p95"], "<", p95_max, CALIBRATED),
        check("reduction", out["reduction"], ">=", min_reduction, CALIBRATED),
    ]
    return verdict(checks, out)


@CLAIMS.register("spherical_eos")
def spherical_eos(columns, context, *, settle_range=(1.8, 2.2), min_reduction=0.1) -> dict:
    """η_eff × spherical sharpness settles near 2 and the spherical sharpness then decreases.

    Numbers: ``settle_step`` (first measurement with the product inside ``settle_range``),
    ``product_median`` / ``product_p05`` / ``product_p95`` over the second half of the run, and the
    spherical sharpness ``early_median`` / ``late_median`` / ``reduction`` from the settle step on (as in
    ``eos_flow``). Passed: the median lies in ``settle_range`` and ``reduction ≥ min_reduction``.
    """
    del context
    product = "spherical_sharpness_x_eta_eff"
    _require(columns, product, "spherical_sharpness")
    values = columns[product]
    above = np.isfinite(values) & (values >= settle_range[0]) & (values <= settle_range[1])
    if not above.any():
        finite = values[np.isfinite(values)]
        return verdict([check("settle_step", None, "is", True, PRE_REGISTERED,
                              "η_eff × spherical sharpness never entered " + str(settle_range))],
                       {"settle_step": None,
                        "product_max": float(finite.max()) if finite.size else None})
    first = int(np.argmax(above))
    steps = columns["step"]
    late = values[(steps >= steps[-1] / 2) & np.isfinite(values)]
    out = {"settle_step": int(steps[first]), "product_median": float(np.median(late)),
           "product_p05": float(np.percentile(late, 5)),
           "product_p95": float(np.percentile(late, 95)),
           **_reduction(columns, "spherical_sharpness", first)}
    checks = [
        check("product_median", out["product_median"], "in", settle_range, PRE_REGISTERED),
        check("reduction", out["reduction"], ">=", min_reduction, CALIBRATED),
    ]
    return verdict(checks, out)
