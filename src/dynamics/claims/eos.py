"""Edge of stability: a curvature measure rises to the optimizer's stability threshold and hovers there.

Which curvature and which threshold depend on the optimizer: ``THRESHOLDS`` is the one table of
``dynamics.optim.thresholds`` (derived once, tested on quadratics), shared by this verdict, the
figures and the probes. For example GD: ``sharpness`` λ_max(H) against 2/η; heavy ball (2 + 2β)/η;
Adam: ``precond_sharpness`` λ_max(P⁻¹H) against (2 + 2β1)/((1 − β1)η) = 38/η at β1 = 0.9; RMSprop
2/η; normalized GD 2/η_t with η_t = η/‖∇L(θ_t)‖, per step.
"""

import numpy as np

from dynamics.claims.base import CALIBRATED, CLAIMS, PRE_REGISTERED, check, verdict
from dynamics.errors import ConfigError
from dynamics.optim.thresholds import STABILITY, Stability, not_applicable
from dynamics.registry import Registry

THRESHOLDS: Registry[Stability] = Registry("stability threshold", "optimizer.name")
for _name, _stability in STABILITY.items():
    THRESHOLDS.register(_name)(_stability)


def stability_threshold(optimizer: str, hparams: dict, columns: dict | None = None):
    """The optimizer's stability threshold (a number, or per-row values for normalized GD)."""
    return THRESHOLDS.get(optimizer).threshold(hparams, columns or {})


THRESHOLD_CLAIMS = ("eos", "eos_flow")  # claims judged against the optimizer's stability threshold


def not_applicable_reason(claim: str, optimizer: str) -> str | None:
    """``"not applicable: no known threshold for <optimizer>"`` when claim ``claim`` needs a threshold
    the table lacks; ``None`` otherwise. A dictionary lookup: call it before compiling."""
    return not_applicable(optimizer) if claim in THRESHOLD_CLAIMS else None


def required_probe(claim: str, optimizer: str, criteria: dict) -> str | None:
    """The probe whose metric claim ``claim`` reads for ``optimizer`` (checked before compiling)."""
    if not_applicable_reason(claim, optimizer):
        return None
    if claim in THRESHOLD_CLAIMS:
        metric = THRESHOLDS.get(optimizer).metric
        return criteria.get("reduced_metric", metric) if claim == "eos_flow" and metric == "sharpness" \
            else metric
    return {"spherical_eos": "spherical_sharpness"}.get(claim)


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


def reached(metric: str, first, ratio: np.ndarray, label: str):
    """A check that the metric reached its threshold in the run, with the maximum ratio it reached."""
    measured = ratio[np.isfinite(ratio)]
    peak = float(np.max(measured)) if measured.size else None
    note = f"{metric} never reached {label} within the run" if first is None else ""
    return check("reached_threshold", peak, ">=", 1.0, PRE_REGISTERED, note), peak


@CLAIMS.register("eos")
def edge_of_stability(columns, context, *, median_range=(0.98, 1.1), p95_max=1.25,
                      min_rise_after=0.05, max_rise_before=0.01, expected_crossing=None,
                      crossing_tolerance=0.2) -> dict:
    """Numbers of the EoS claim and the checks of experiments/eos/README.md.

    - ``crossing_step``: first measured step with the metric ≥ threshold (table above); a run whose
      metric never reaches its threshold fails ``reached_threshold`` and says so.
    - ``ratio_median`` / ``ratio_p05`` / ``ratio_p95`` / ``ratio_max``: metric/threshold after it.
    - ``loss_rise_before`` / ``loss_rise_after``: fraction of consecutive logged pairs whose
      loss went up, among the pairs strictly before the crossing step / from it on.
    - ``final_loss`` below ``loss_at_crossing``: training still makes progress at the edge.
    ``expected_crossing`` (off by default) is a regression guard for one stated η: the crossing must lie
    within ``crossing_tolerance`` of it.
    """
    metric, threshold, first, ratio = crossing_and_ratio(columns, context)
    label = THRESHOLDS.get(context["optimizer"]).label_for(context["hparams"])
    measured = np.isfinite(ratio)
    out = {"metric": metric, "threshold": float(np.median(threshold[measured]))
           if measured.any() else None, "crossing_step": None}
    reach, peak = reached(metric, first, ratio, label)
    out["ratio_peak"] = peak
    if first is None:
        return verdict([reach], out)
    step, loss = columns["step"], columns["loss"]
    after, before = loss[first:], loss[:first]
    out.update(
        crossing_step=int(step[first]),
        **hover_stats(ratio, first),
        loss_rise_before=_rise_fraction(before),
        loss_rise_after=_rise_fraction(after),
        loss_at_crossing=float(loss[first]),
        final_loss=float(after[np.isfinite(after)][-1]),
    )
    checks = [
        reach,
        check("ratio_median", out["ratio_median"], "in", median_range, PRE_REGISTERED),
        check("ratio_p95", out["ratio_p95"], "<", p95_max, CALIBRATED),
        check("loss_rise_after", out["loss_rise_after"], ">=", min_rise_after, CALIBRATED),
        check("loss_rise_before", out["loss_rise_before"], "<", max_rise_before, PRE_REGISTERED),
        check("final_loss_vs_crossing", out["final_loss"] / out["loss_at_crossing"], "<", 1.0,
              PRE_REGISTERED),
    ]
    if expected_crossing is not None:
        checks.append(check("crossing_step", out["crossing_step"], "in",
                            ((1 - crossing_tolerance) * expected_crossing,
                             (1 + crossing_tolerance) * expected_crossing), CALIBRATED))
    return verdict(checks, out)


@CLAIMS.register("eos_optimizers")
def eos_for_every_optimizer(columns, context) -> dict:
    """Task ``eos_optimizers``: every optimizer's own claim ``eos`` (judged over its seeds) passed.

    ``context["results"]``: label → that optimizer's run summary (with its ``verdict``). One check per
    optimizer; a failed run, a missing verdict or "not applicable" fails it, and no optimizer at all
    fails the claim (no checks).
    """
    del columns
    checks, per = [], {}
    for label, summary in context["results"].items():
        v = summary.get("verdict") or {}
        reason = "; ".join((v.get("failed") or [])[:2]) or summary.get("error", "no verdict")
        checks.append(check(label, v.get("passed") is True, "is", True, PRE_REGISTERED,
                            note="" if v.get("passed") is True else reason))
        per[label] = {"passed": v.get("passed"), "failed": v.get("failed", [])}
    return verdict(checks, {"optimizers": per})

