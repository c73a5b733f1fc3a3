"""Cross-run figure and verdict for the eos_lr_sweep multirun.

Usage: python experiments/eos_lr_sweep/analyze.py [MULTIRUN_DIR]   (default: the newest
multirun/eos_lr_sweep/<date>). Writes MULTIRUN_DIR/eos_lr_sweep.png and MULTIRUN_DIR/sweep_summary.json:
one row per step size (lr, 2/lr, crossing step, median sharpness/(2/lr), passed) and ``passed``: every
run finished and passed its own EoS verdict, and the step sizes are at least two.
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dynamics.io import load_runs  # noqa: E402


def analyze(sweep_dir: Path) -> dict:
    runs = sorted(load_runs(sweep_dir, metrics=True), key=lambda r: r["hparams.lr"])
    fig, ax = plt.subplots(figsize=(7, 4))
    rows = []
    for i, run in enumerate(runs):
        color = f"C{i}"
        lr = run["hparams.lr"]
        pts = [(m["step"], m["sharpness"]) for m in run["metrics"] if m.get("sharpness") is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color=color, lw=0.8, label=f"η = {lr:g}")
        ax.axhline(2 / lr, color=color, ls="--", lw=0.8)
        rows.append({"lr": lr, "threshold": 2 / lr, "status": run["status"],
                     "crossing_step": run.get("verdict.crossing_step"),
                     "ratio_median": run.get("verdict.ratio_median"),
                     "passed": run.get("verdict.passed")})
    ax.set(xlabel="step", ylabel="sharpness λ_max(∇²L)",
           title="full-batch GD: sharpness hovers at 2/η (dashed) for each η")
    ax.legend()
    fig.tight_layout()
    fig.savefig(sweep_dir / "eos_lr_sweep.png", dpi=120)
    summary = {"runs": rows, "passed": len(rows) >= 2 and all(
        r["status"] == "finished" and r["passed"] for r in rows)}
    (sweep_dir / "sweep_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def newest(root: Path) -> Path:
    dirs = sorted(p for p in root.glob("*") if p.is_dir())
    if not dirs:
        sys.exit(f"no multirun under {root}: run python -m dynamics.run -m +exp=eos_lr_sweep first")
    return dirs[-1]


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else newest(Path("multirun/eos_lr_sweep"))
    print(json.dumps(analyze(path), indent=2))
