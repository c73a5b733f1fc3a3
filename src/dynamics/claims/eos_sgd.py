r"""Edge of stochastic stability (Andreyev & Beneventano, arXiv 2412.20553): under small-batch SGD with
step η the batch sharpness :math:`\mathrm{BS} = \mathbb E_B[g_B^\top H_B g_B/\|g_B\|^2]` rises to
2/η and hovers there, while λ_max of the full-batch Hessian stays below 2/η.

Judged per seed on the logged columns ``batch_sharpness`` (probe ``batch_sharpness``) and ``sharpness``
(probe ``sharpness``: λ_max of the full training loss), both against 2/η with η the traced learning rate.
A full batch is gradient descent: BS is then the Rayleigh quotient of H along the full gradient, λ_max
itself reaches 2/η (classic EoS) and ``sharpness_median`` fails, as it does for a large batch (128 of
1,000 examples); with an η too small BS is still rising when the run ends and ``reached_threshold``
fails.
"""

import numpy as np

from dynamics.claims.base import CALIBRATED, CLAIMS, PRE_REGISTERED, check, verdict

# The probes each claim of this module reads: all must be on (checked before compiling,
# ``dynamics.validation``).
REQUIRED_PROBES = {"eos_sgd": ("sharpness", "batch_sharpness")}

# plain SGD only: with momentum the plateau moves (2(1−β)/η small batch, arXiv 2604.14108)
SGD_NAMES = ("gd", "sgd")


def _ratio(columns, name, threshold):
    if name not in columns:
        return None
    return columns[name] / threshold


def _median_from(ratio, first):
    after = ratio[first:][np.isfinite(ratio[first:])]
    return float(np.median(after)) if after.size else None


@CLAIMS.register("eos_sgd")
def edge_of_stochastic_stability(columns, context, *, arrival=0.9, bs_median_range=(0.9, 1.1),
                                 max_sharpness_median=0.9) -> dict:
    """Numbers of the claim and the checks of experiments/eos_sgd/README.md.

    - ``threshold`` = 2/η; ``bs_peak`` = max BS/(2/η) over the run: ``reached_threshold`` ≥ 1
      (pre-registered: BS rises to 2/η);
    - ``arrival_step``: first measured step with BS ≥ ``arrival``·2/η (BS is a Monte-Carlo estimate
      that hovers around 2/η); the hover is judged from there on:
    - ``bs_median``: median BS/(2/η) after arrival, in ``bs_median_range`` (centre 1 from the paper,
      width calibrated);
    - ``sharpness_median``: median λ_max/(2/η) after arrival, below ``max_sharpness_median``
      (calibrated bound under the paper's 1: the full-batch sharpness stays clearly below 2/η);
    - ``bs_over_sharpness``: median BS/λ_max after arrival > 1 (pre-registered: λ_max stays below BS);
    - ``bs_se_median`` (reported): the median relative standard error of the BS estimate;
    - ``optimizer`` is plain SGD (``gd``/``sgd``): with momentum the plateau moves (arXiv 2604.14108).
    """
    optimizer = context["optimizer"]
    lr = float(np.asarray(context["hparams"]["learning_rate"]))
    threshold = 2.0 / lr
    out = {"threshold": threshold, "arrival_step": None}
    bs = _ratio(columns, "batch_sharpness", threshold)
    lam = _ratio(columns, "sharpness", threshold)
    missing = [f"column {name}" for name, r in (("batch_sharpness", bs), ("sharpness", lam))
               if r is None]
    plain = check("optimizer", optimizer in SGD_NAMES, "is", True, PRE_REGISTERED,
                  note="" if optimizer in SGD_NAMES else
                  f"claim eos_sgd is stated for plain SGD (gd/sgd), not {optimizer}")
    if missing:
        return verdict([plain], out, missing)
    measured = np.isfinite(bs)
    peak = float(np.max(bs[measured])) if measured.any() else None
    out["bs_peak"] = peak
    out["sharpness_peak"] = float(np.nanmax(lam)) if np.isfinite(lam).any() else None
    arrived = measured & (bs >= arrival)
    first = int(np.argmax(arrived)) if arrived.any() else None
    reach = check("reached_threshold", peak, ">=", 1.0, PRE_REGISTERED,
                  "" if first is not None else f"batch sharpness never reached {arrival:g}·2/η")
    if first is None:
        return verdict([plain, reach], out)
    out["arrival_step"] = int(columns["step"][first])
    out["bs_median"] = _median_from(bs, first)
    out["sharpness_median"] = _median_from(lam, first)
    out["bs_over_sharpness"] = _median_from(columns["batch_sharpness"] / columns["sharpness"], first)
    if "batch_sharpness_se" in columns:
        rel = columns["batch_sharpness_se"][first:] / columns["batch_sharpness"][first:]
        rel = rel[np.isfinite(rel)]
        out["bs_se_median"] = float(np.median(rel)) if rel.size else None
    checks = [
        plain,
        reach,
        check("bs_median", out["bs_median"], "in", bs_median_range, CALIBRATED),
        check("sharpness_median", out["sharpness_median"], "<", max_sharpness_median, CALIBRATED),
        check("bs_over_sharpness", out["bs_over_sharpness"], ">", 1.0, PRE_REGISTERED),
    ]
    return verdict(checks, out)


def plot_claim(runs: list[tuple[int, float, dict]], path, *, name: str = "eos_sgd",
               batch_size: int | None = None):
    """The claim figure: each seed's batch sharpness (left) and full-batch λ_max (right) over 2/η.

    ``runs``: ``(seed, η, columns)`` per run, with the logged columns ``step``, ``batch_sharpness`` and
    ``sharpness``.
    """
    from dynamics.plots import plot_threshold_panels

    batch = f"batch {batch_size}" if batch_size else "full batch"
    etas = ", ".join(f"{lr:g}" for lr in sorted({lr for _, lr, _ in runs}))
    title = f"{name}: SGD, {batch}, η = {etas}, seeds {sorted({seed for seed, _, _ in runs})}"

    panels = []
    for metric, name in (("batch_sharpness", "batch sharpness E_B[gᵀH_B g/‖g‖²]"),
                         ("sharpness", "full-batch λ_max(H)")):
        series = [(seed, columns["step"], columns[metric] * lr / 2.0)
                  for seed, lr, columns in runs if metric in columns]
        panels.append((name, metric, "2/η", series))
    return plot_threshold_panels(panels, path, title=title)
