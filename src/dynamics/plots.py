"""Figures of one run from its logged rows (plain lists; no JAX)."""

import os
from pathlib import Path

import numpy as np

# Files only, no windows: the Agg backend for every figure of a run (also the tasks' own, which import
# pyplot themselves), unless the user chose a backend.
os.environ.setdefault("MPLBACKEND", "Agg")


class _Pyplot:
    """``matplotlib.pyplot`` (Agg backend), imported at the first drawing call rather than at import:
    importing matplotlib costs about 0.4 s that a run (or ``import dynamics.tasks``) need not pay
    before it draws. The first attribute looked up replaces this stand-in by pyplot itself."""

    def __getattr__(self, name):
        global plt
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot

        plt = matplotlib.pyplot
        return getattr(plt, name)


plt = _Pyplot()

# Curvature metrics drawn when a run logged them: metric -> (file name, axis label).
CURVES = {
    "sharpness": ("sharpness.png", "sharpness λ_max(∇²L)"),
    "loss_sharpness": ("loss_sharpness.png", "λ_max(∇²L) of the probe's loss"),
    "precond_sharpness": ("precond_sharpness.png", "preconditioned sharpness λ_max(P⁻¹∇²L)"),
    "spherical_sharpness_x_eta_eff": ("spherical_sharpness.png", "spherical sharpness × η_eff"),
    "hessian_trace": ("hessian_trace.png", "tr ∇²L"),
}


def _series(rows: list[dict], key: str):
    pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    return (np.array([p[0] for p in pts]), np.array([p[1] for p in pts])) if pts else (None, None)


def _mark_divergence(ax, step: int | None) -> None:
    if step is not None:
        ax.axvline(step, color="C3", ls=":", lw=1.0, label=f"diverged at step {step}")
        ax.legend(loc="best", fontsize=8)


def plot_training(rows: list[dict], figures_dir: str | Path, *, title: str = "",
                  thresholds: dict[str, tuple[str, object]] | None = None,
                  diverged_step: int | None = None, curves: bool = True) -> list[Path]:
    """Write ``loss.png`` (log scale) and, with ``curves``, one figure per logged curvature metric.

    ``thresholds`` maps a metric to ``(label, value)`` where ``value`` is a number (a horizontal line)
    or a callable ``row -> number`` (a curve, e.g. 2/η_t for normalized GD). ``diverged_step`` draws a
    vertical line where a diverged run's loss became non-finite (on every figure).
    """
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    thresholds = thresholds or {}
    written = []
    step, loss = _series(rows, "loss")
    if step is not None:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(step, loss, lw=0.8)
        if np.all(loss > 0):
            ax.set_yscale("log")
        ax.set(xlabel="step", ylabel="training loss", title=title)
        _mark_divergence(ax, diverged_step)
        written.append(_save(fig, figures_dir / "loss.png"))
    for metric, (filename, ylabel) in (CURVES.items() if curves else ()):
        step, values = _series(rows, metric)
        if step is None:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(step, values, lw=0.8, label=ylabel)
        if metric in thresholds:
            label, value = thresholds[metric]
            if callable(value):
                measured = [r for r in rows if r.get(metric) is not None]
                ax.plot(step, [value(r) for r in measured], "k--", lw=0.8, label=label)
            else:
                ax.axhline(value, color="k", ls="--", lw=0.8, label=f"{label} = {value:.4g}")
        ax.set(xlabel="step", ylabel=ylabel, title=title)
        ax.yaxis.label.set_fontsize(8)
        ax.legend(loc="lower right")
        _mark_divergence(ax, diverged_step)
        written.append(_save(fig, figures_dir / filename))
    return written


def plot_claim_checks(per_check: dict, seeds: list[int], path: str | Path, *,
                      title: str = "") -> Path:
    """One panel per numeric check: its value on each seed (filled: passed) against its bound."""
    numeric = {k: v for k, v in per_check.items() if v["op"] != "is"}
    names = list(numeric) or list(per_check)
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        entry = per_check[name]
        values = [np.nan if v is None else float(v) for v in entry["values"]]
        ax.plot(seeds[:len(values)], values, "o", mfc="none", color="C0")
        bound = entry["bound"]
        for b in (bound if isinstance(bound, list) else [bound]):
            if isinstance(b, (int, float)) and not isinstance(b, bool):
                ax.axhline(b, color="k", ls="--", lw=0.8)
        ax.set(title=f"{name} {entry['op']} {bound}", xlabel="seed")
        ax.title.set_fontsize(8)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(f"{title}: checks per seed (dashed: bound)", fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save(fig, path)


def plot_threshold_ratio(series: list[tuple[str, int, np.ndarray, np.ndarray]], path: str | Path, *,
                         metric: str, threshold_label: str, title: str = "") -> Path:
    """The claim figure of an EoS run over seeds (and step sizes): each point's metric divided by its
    own threshold against the step, coloured by group (``series``: label, group, steps, ratio)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    labelled = set()
    for label, group, steps, ratio in series:
        keep = np.isfinite(ratio)
        ax.plot(steps[keep], ratio[keep], lw=0.7, alpha=0.8, color=f"C{group % 10}",
                label=None if group in labelled else label)
        labelled.add(group)
    ax.axhline(1.0, color="k", ls="--", lw=0.8, label=f"threshold {threshold_label}")
    ax.set(xlabel="step", ylabel=f"{metric} / ({threshold_label})", title=title)
    ax.legend(loc="lower right", fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save(fig, path)


def plot_threshold_panels(panels: list[tuple[str, str, str, list]], path: str | Path, *,
                          title: str = "") -> Path:
    """One panel per optimizer (``panels``: title, metric, threshold label, [(seed, steps, ratio)]):
    each seed's stability metric over its own threshold against the step, the threshold at 1."""
    cols = min(4, max(1, len(panels)))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False,
                             sharey=True)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (name, metric, label, series) in zip(axes.flat, panels):
        for i, (seed, steps, ratio) in enumerate(series):
            keep = np.isfinite(ratio)
            ax.plot(steps[keep], ratio[keep], lw=0.6, alpha=0.8, color=f"C{i % 10}",
                    label=f"seed {seed}")
        ax.axhline(1.0, color="k", ls="--", lw=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel(f"{metric} / ({label})" if metric else "no threshold", fontsize=7)
        ax.set_ylim(0, 1.5)
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save(fig, path)


def identity_line(ax) -> None:
    """Dashed y = x across the axes' current data range (for scatter plots of one quantity vs another)."""
    lim = [min(ax.get_xlim()[0], ax.get_ylim()[0]), max(ax.get_xlim()[1], ax.get_ylim()[1])]
    ax.plot(lim, lim, "k--", lw=0.8)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
