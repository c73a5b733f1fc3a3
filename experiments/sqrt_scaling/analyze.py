"""Cross-run figure and verdict of the sqrt_scaling multiruns (one per optimizer).

Usage: python experiments/sqrt_scaling/analyze.py MULTIRUN_DIR [MULTIRUN_DIR ...]   (default: every
multirun/sqrt_scaling/<date>). For each optimizer the base run is κ = 1; every other run (rule, κ) is
compared with it against samples seen (step × batch size; the eval probe's steps of the base run are a
subset of every scaled run's, scaled by 1/κ):

- test accuracy: max over the last 75 % of the eval points of |acc_κ − acc_1| (absolute, accuracy);
- train loss: the batch losses averaged in ``WINDOWS`` equal windows of samples seen, then the max over
  the last 75 % of the windows of |L_κ/L_1 − 1| (relative).

The gap of a run is the larger of the two (accuracy in absolute units, loss relative). The comparison uses
the lowest seed; a base run (κ = 1) of another seed anywhere under the multirun directory (e.g.
``seed=1 hydra.run.dir=<multirun>/seed1``) gives ``seed_floor``, the same gap between two seeds of the base
run: the part of a gap that is run-to-run noise. Writes
``sqrt_scaling.png`` and ``sweep_summary.json`` (the ``scaling_rule`` verdict) into the first directory.
"""

import json
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dynamics.io import load_runs  # noqa: E402
from dynamics.claims import CLAIMS as VERDICTS  # noqa: E402

WINDOWS = 12


def curves(run: dict) -> dict:
    batch = run["hparams.batch_size"]
    rows = run["metrics"]
    last = max(r["step"] for r in rows)
    evals = {r["step"] * batch: r["test_accuracy"] for r in rows
             if r.get("test_accuracy") is not None}
    pts = np.array([(r["step"] * batch, r["loss"]) for r in rows
                    if r.get("loss") is not None and r["step"] < last])
    edges = np.linspace(0, last * batch, WINDOWS + 1)
    idx = np.clip(np.searchsorted(edges, pts[:, 0], side="right") - 1, 0, WINDOWS - 1)
    window = np.array([pts[idx == i, 1].mean() for i in range(WINDOWS)])
    return {"eval": evals, "window_loss": window, "window_x": 0.5 * (edges[1:] + edges[:-1])}


def gaps(run: dict, base: dict) -> dict:
    common = sorted(set(run["eval"]) & set(base["eval"]))
    common = common[len(common) // 4:]
    acc = max(abs(run["eval"][s] - base["eval"][s]) for s in common)
    start = WINDOWS // 4
    loss = float(np.max(np.abs(run["window_loss"][start:] / base["window_loss"][start:] - 1.0)))
    return {"test_accuracy_abs": float(acc), "train_loss_rel": loss, "gap": max(float(acc), loss)}


def mean_curves(group: list[dict]) -> dict:
    """The mean over seeds: window losses averaged, test accuracy averaged at the common eval points."""
    common = sorted(set.intersection(*(set(c["eval"]) for c in group)))
    return {"eval": {s: float(np.mean([c["eval"][s] for c in group])) for s in common},
            "window_loss": np.mean([c["window_loss"] for c in group], axis=0),
            "window_x": group[0]["window_x"]}


def seed_floor(group: list[dict]) -> float | None:
    """Noise level of a gap between two means of ``len(group)`` seeds: the gap between the means of the
    two halves of the base run's seeds, divided by √2 (a half-mean has twice the variance of a full mean,
    so half-vs-half differences are √2 × full-vs-full ones). It uses independent inits, while the scaled
    runs share the base run's init, so it over-estimates the noise of their gaps."""
    if len(group) < 2:
        return None
    half = len(group) // 2
    return gaps(mean_curves(group[:half]), mean_curves(group[half:2 * half]))["gap"] / np.sqrt(2)


def analyze(dirs: list[Path]) -> dict:
    runs = [r for d in dirs for r in load_runs(d, metrics=True) if r.get("status") == "finished"]
    seeds = defaultdict(dict)  # optimizer -> (rule, κ) -> seed -> curves
    for run in runs:
        key = (run["config.scaling.rule"], float(run["config.scaling.kappa"]))
        seeds[run["hparams.optimizer"]].setdefault(key, {})[int(run["config.seed"])] = curves(run)
    floors, counts, table, gap_map = {}, {}, [], defaultdict(dict)
    fig, axes = plt.subplots(len(seeds), 2, figsize=(11, 3.3 * len(seeds)), squeeze=False)
    for row, (opt, by_point) in enumerate(sorted(seeds.items())):
        shared = sorted(set.intersection(*(set(s) for s in by_point.values())))  # seeds at every point
        group = {k: mean_curves([v[s] for s in shared]) for k, v in by_point.items()}
        base_key = next(k for k in group if k[1] == 1.0)
        base = group[base_key]
        counts[opt] = len(shared)
        floors[opt] = seed_floor([by_point[base_key][s] for s in shared])
        for i, ((rule, kappa), c) in enumerate(sorted(group.items())):
            style = "-" if rule == "sqrt" else ":"
            label = "κ = 1 (base)" if kappa == 1.0 else f"{rule}, κ = {kappa:g}"
            if kappa == 1.0 and (rule, kappa) != base_key:
                continue
            axes[row, 0].plot(c["window_x"], c["window_loss"], style, marker="o", ms=3,
                              color=f"C{i}", label=label)
            xs = sorted(c["eval"])
            axes[row, 1].plot(xs, [c["eval"][x] for x in xs], style, lw=0.8, color=f"C{i}",
                              label=label)
            if kappa != 1.0:
                g = gaps(c, base)
                gap_map[f"{opt}/{rule}"][kappa] = g["gap"]
                table.append({"optimizer": opt, "rule": rule, "kappa": kappa, **g})
        title = f"{opt} (mean of {len(shared)} seeds)"
        axes[row, 0].set(xlabel="samples seen", ylabel="train loss (window mean)", title=title)
        axes[row, 1].set(xlabel="samples seen", ylabel="test accuracy", title=title)
        axes[row, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(dirs[0] / "sqrt_scaling.png", dpi=120)
    verdict = VERDICTS.get("scaling_rule")({}, {"gaps": dict(gap_map)})
    summary = {"runs": [{"optimizer": r["hparams.optimizer"], "rule": r["config.scaling.rule"],
                         "kappa": r["config.scaling.kappa"], "seed": r["config.seed"],
                         "lr": r["hparams.lr"],
                         "batch_size": r["hparams.batch_size"], "steps": r["hparams.steps"],
                         "wall_time_s": r["wall_time_s"]} for r in runs],
               "seeds": counts, "gaps": table, "seed_floor": floors, "verdict": verdict,
               "passed": verdict["passed"]}
    (dirs[0] / "sweep_summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


if __name__ == "__main__":
    paths = [Path(p) for p in sys.argv[1:]] or sorted(
        p for p in Path("multirun/sqrt_scaling").glob("*") if p.is_dir())
    if not paths:
        sys.exit("no multirun under multirun/sqrt_scaling: run python -m dynamics.run -m "
                 "+exp=sqrt_scaling first")
    print(json.dumps(analyze(paths), indent=2))
