"""Cross-run figure and verdict of the svag multiruns (one per optimizer).

Usage: python experiments/svag/analyze.py MULTIRUN_DIR [MULTIRUN_DIR ...]   (default: every
multirun/svag/<date>). Groups the runs by optimizer and ℓ (``oracle.svag_l``), puts the curves on the
continuous-time axis (``time`` = step·η for SGD, step·η² for RMSprop/Adam, after SVAG's rescaling), and
measures the distance between consecutive ℓ at matched times:

- test accuracy and test loss from the eval probe (logged every 10 steps; the times of ℓ = 1 are a subset
  of every other ℓ's, so no interpolation): mean |a_ℓ(t) − a_2ℓ(t)| over those times;
- train loss: the batch losses averaged in ``WINDOWS`` equal windows of continuous time (each holds ℓ²×
  more steps at larger ℓ), then the mean |·| between consecutive ℓ.

Seeds: the ladder compares, at each ℓ, the mean curve over the seeds run at every ℓ of that optimizer
(``-m ... seed=0,1,2``). Runs of other seeds at ℓ = 1 only (e.g. ``seed=1 oracle.svag_l=1`` written
anywhere under the multirun directory) count for ``seed_floor`` alone: the mean distance between two
single runs of different seeds at ℓ = 1, the part of a single-seed gap that is run-to-run noise rather
than discretization (a gap between means of S seeds carries about seed_floor/√S of it).

Writes ``svag.png`` and ``sweep_summary.json`` (the ``svag_ladder`` verdict: every gap sequence shrinks)
into the first directory.
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
from dynamics.verdicts import VERDICTS  # noqa: E402

WINDOWS = 10


def curves(run: dict) -> dict:
    rows = run["metrics"]
    evals = [(r["time"], r["test_accuracy"], r["test_loss"]) for r in rows
             if r.get("test_accuracy") is not None]
    t_end = max(r["time"] for r in rows)
    train = [(r["time"], r["loss"]) for r in rows if r.get("loss") is not None and r["time"] < t_end]
    tt, ll = np.array(train).T
    edges = np.linspace(0.0, t_end, WINDOWS + 1)
    idx = np.clip(np.searchsorted(edges, tt, side="right") - 1, 0, WINDOWS - 1)
    window_loss = np.array([ll[idx == i].mean() for i in range(WINDOWS)])
    return {"eval": {round(t, 12): (a, lo) for t, a, lo in evals}, "train_t": tt, "train_loss": ll,
            "window_loss": window_loss, "window_t": 0.5 * (edges[1:] + edges[:-1])}


def mean_curves(cs: list[dict]) -> dict:
    """The mean over seeds of curves at one ℓ (same eval times and windows)."""
    if len(cs) == 1:
        return cs[0]
    common = set.intersection(*(set(c["eval"]) for c in cs))
    return {"eval": {t: tuple(np.mean([c["eval"][t] for c in cs], axis=0)) for t in common},
            "window_loss": np.mean([c["window_loss"] for c in cs], axis=0),
            "window_t": cs[0]["window_t"]}


def gap(a: dict, b: dict, metric: str) -> float:
    if metric == "train_loss":
        return float(np.mean(np.abs(a["window_loss"] - b["window_loss"])))
    col = 0 if metric == "test_accuracy" else 1
    common = sorted(set(a["eval"]) & set(b["eval"]))
    return float(np.mean([abs(a["eval"][t][col] - b["eval"][t][col]) for t in common]))


def analyze(dirs: list[Path]) -> dict:
    runs = [r for d in dirs for r in load_runs(d, metrics=True) if r.get("status") == "finished"]
    per = defaultdict(lambda: defaultdict(dict))  # optimizer -> l -> seed -> curves
    for run in runs:
        per[run["hparams.optimizer"]][float(run["config.oracle.svag_l"])][int(run["config.seed"])] = \
            curves(run)
    by_opt, floors, n_seeds = {}, {}, {}
    for opt, by_l in per.items():
        seeds = sorted(set.intersection(*(set(v) for v in by_l.values())))
        n_seeds[opt] = len(seeds)
        by_opt[opt] = {l: mean_curves([v[s] for s in seeds]) for l, v in by_l.items()}
        ones = list(by_l.get(1.0, {}).values())
        if len(ones) >= 2:
            floors[opt] = {m: float(np.mean([gap(a, b, m) for i, a in enumerate(ones)
                                             for b in ones[i + 1:]]))
                           for m in ("train_loss", "test_accuracy", "test_loss")}
    metrics = ("train_loss", "test_accuracy", "test_loss")
    gaps = {}
    fig, axes = plt.subplots(len(by_opt), 2, figsize=(11, 3.3 * len(by_opt)), squeeze=False)
    for row, (opt, ladder) in enumerate(sorted(by_opt.items())):
        ls = sorted(ladder)
        gaps[opt] = {m: [gap(ladder[a], ladder[b], m) for a, b in zip(ls, ls[1:])] for m in metrics}
        gaps[opt]["l_pairs"] = [[a, b] for a, b in zip(ls, ls[1:])]
        gaps[opt]["n_seeds"] = n_seeds[opt]
        if opt in floors:
            gaps[opt]["seed_floor"] = floors[opt]
        for i, l in enumerate(ls):
            c = ladder[l]
            axes[row, 0].plot(c["window_t"], c["window_loss"], "o-", ms=3, color=f"C{i}",
                              label=f"ℓ = {l:g}")
            ts = sorted(c["eval"])
            axes[row, 1].plot(ts, [c["eval"][t][0] for t in ts], color=f"C{i}", lw=0.8,
                              label=f"ℓ = {l:g}")
        axes[row, 0].set(xlabel="continuous time", ylabel="train loss (window mean)",
                         title=f"{opt}: train loss per ℓ")
        axes[row, 1].set(xlabel="continuous time", ylabel="test accuracy",
                         title=f"{opt}: test accuracy per ℓ")
        axes[row, 0].legend(fontsize=7)
        axes[row, 1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(dirs[0] / "svag.png", dpi=120)
    verdict = VERDICTS.get("svag_ladder")({}, {"gaps": {o: {m: g[m] for m in metrics}
                                                        for o, g in gaps.items()}})
    summary = {"runs": [{"optimizer": r["hparams.optimizer"], "l": r["config.oracle.svag_l"],
                         "seed": r["config.seed"], "lr": r["hparams.lr"],
                         "steps": r["hparams.steps"],
                         "wall_time_s": r["wall_time_s"],
                         "final_test_accuracy": r.get("final.test_accuracy")} for r in runs],
               "gaps": gaps, "verdict": verdict, "passed": verdict["passed"]}
    (dirs[0] / "sweep_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    paths = [Path(p) for p in sys.argv[1:]] or sorted(
        p for p in Path("multirun/svag").glob("*") if p.is_dir())
    if not paths:
        sys.exit("no multirun under multirun/svag: run python -m dynamics.run -m +exp=svag first")
    print(json.dumps(analyze(paths), indent=2))
