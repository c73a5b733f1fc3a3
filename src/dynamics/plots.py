"""Figures of one run from its logged rows (plain lists; no JAX)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _series(rows: list[dict], key: str):
    pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    return (np.array([p[0] for p in pts]), np.array([p[1] for p in pts])) if pts else (None, None)


def plot_training(rows: list[dict], figures_dir: str | Path, *, title: str = "",
                  threshold: float | None = None, threshold_label: str = "2/η") -> list[Path]:
    """Write ``loss.png`` (log scale) and, when measured, ``sharpness.png`` with the threshold line."""
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    written = []
    step, loss = _series(rows, "loss")
    if step is not None:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(step, loss, lw=0.8)
        if np.all(loss > 0):
            ax.set_yscale("log")
        ax.set(xlabel="step", ylabel="training loss", title=title)
        written.append(_save(fig, figures_dir / "loss.png"))
    step, sharp = _series(rows, "sharpness")
    if step is not None:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(step, sharp, lw=0.8, label="sharpness λ_max(∇²L)")
        if threshold is not None:
            ax.axhline(threshold, color="k", ls="--", lw=0.8, label=f"{threshold_label} = {threshold:g}")
        ax.set(xlabel="step", ylabel="sharpness", title=title)
        ax.legend(loc="lower right")
        written.append(_save(fig, figures_dir / "sharpness.png"))
    return written


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
