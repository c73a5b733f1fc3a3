"""Cross-run figure and verdict of the svag multiruns (one per optimizer).

Usage: python experiments/svag/analyze.py MULTIRUN_DIR [MULTIRUN_DIR ...]   (default: every
multirun/svag/<date>). Groups the runs by optimizer, ℓ (``oracle.svag_l``) and seed, puts the curves on
the continuous-time axis (``time`` = step·η for SGD, step·η² for RMSprop/Adam, after SVAG's rescaling),
and measures the distance between the *expected* curves of consecutive ℓ — SVAG's claim is weak
convergence, i.e. of expectations E g(θ_t) — at matched times:

- test accuracy and test loss from the eval probe (logged every 10 steps; the times of ℓ = 1 are a subset
  of every other ℓ's, so no interpolation);
- train loss: the batch losses averaged in ``WINDOWS`` equal windows of continuous time (each holds ℓ²×
  more steps at larger ℓ).

Distance d(ℓ, 2ℓ): the root mean square over the times of the difference of the seed means, with the
sampling noise of the means removed: with the paired differences D_i(t) between the runs of seed i at ℓ
and 2ℓ (seed i gives both the same init), d² = mean_t[D̄(t)² − s²_D(t)/S] (s²_D the variance over the S
seeds), an unbiased estimate of the squared distance between the expected curves (d = 0 when the estimate
is negative). Without the correction a distance between two S-seed means never falls below the
noise level ≈ √(2/S)·s, and the ladder compares noise with noise. ``d2_se``: the jackknife standard error
of d² over seeds (seed i of every ℓ left out together). ``raw``: the uncorrected mean |m̄_ℓ − m̄_2ℓ|.

Writes ``svag.png`` and ``sweep_summary.json`` (the ``svag_ladder`` verdict on d²: no sequence grows,
and one per optimizer shrinks) into the first directory.
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


METRICS = ("train_loss", "test_accuracy", "test_loss")


def mean_curves(cs: list[dict]) -> dict:
    """The mean over seeds of curves at one ℓ (same eval times and windows), for the figure."""
    common = set.intersection(*(set(c["eval"]) for c in cs))
    return {"eval": {t: tuple(np.mean([c["eval"][t] for c in cs], axis=0)) for t in common},
            "window_loss": np.mean([c["window_loss"] for c in cs], axis=0),
            "window_t": cs[0]["window_t"]}


def stack(cs: list[dict], metric: str, times: list[float]) -> np.ndarray:
    """(seeds, points) values of ``metric``: the train-loss windows or the eval points at ``times``."""
    if metric == "train_loss":
        return np.array([c["window_loss"] for c in cs])
    col = 0 if metric == "test_accuracy" else 1
    return np.array([[c["eval"][t][col] for t in times] for c in cs])


def squared_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased estimate of mean_t (E a_t − E b_t)² from paired seeds (row i of ``a`` and ``b``: seed i).

    Seed i gives both runs the same init, so they are correlated; the i.i.d. paired differences
    D_i = a_i − b_i make the estimate unbiased anyway: E[D̄²] = (E D)² + Var(D)/S.
    """
    diff = a - b
    return float(np.mean(diff.mean(axis=0) ** 2 - diff.var(axis=0, ddof=1) / len(diff)))


def distance(a: np.ndarray, b: np.ndarray) -> dict:
    """d = √max(d², 0), d² with its jackknife standard error over seeds, and the uncorrected mean |Δ|."""
    d2 = squared_distance(a, b)
    n = len(a)
    loo = np.array([squared_distance(np.delete(a, i, 0), np.delete(b, i, 0)) for i in range(n)])
    se = float(np.sqrt((n - 1) / n * np.sum((loo - loo.mean()) ** 2)))
    return {"d": float(np.sqrt(max(d2, 0.0))), "d2": d2, "d2_se": se,
            "raw": float(np.mean(np.abs(a.mean(axis=0) - b.mean(axis=0))))}


def analyze(dirs: list[Path]) -> dict:
    runs = [r for d in dirs for r in load_runs(d, metrics=True) if r.get("status") == "finished"]
    per = defaultdict(lambda: defaultdict(dict))  # optimizer -> l -> seed -> curves
    for run in runs:
        per[run["hparams.optimizer"]][float(run["config.oracle.svag_l"])][int(run["config.seed"])] = \
            curves(run)
    gaps = {}
    fig, axes = plt.subplots(len(per), 2, figsize=(11, 3.3 * len(per)), squeeze=False)
    for row, (opt, by_l) in enumerate(sorted(per.items())):
        ls = sorted(by_l)
        seeds = sorted(set.intersection(*(set(v) for v in by_l.values())))
        if len(seeds) < 2:
            sys.exit(f"{opt}: the distances need >= 2 seeds at every l (have {seeds})")
        ladder = {l: [by_l[l][s] for s in seeds] for l in ls}
        times = sorted(set.intersection(*(set(c["eval"]) for cs in ladder.values() for c in cs)))
        pairs = list(zip(ls, ls[1:]))
        table = {m: [distance(stack(ladder[a], m, times), stack(ladder[b], m, times)) for a, b in pairs]
                 for m in METRICS}
        gaps[opt] = {m: [x["d"] for x in table[m]] for m in METRICS}
        gaps[opt].update({f"{m}_detail": table[m] for m in METRICS})
        gaps[opt]["l_pairs"] = [list(p) for p in pairs]
        gaps[opt]["n_seeds"] = len(seeds)
        for i, l in enumerate(ls):
            c = mean_curves(ladder[l])
            axes[row, 0].plot(c["window_t"], c["window_loss"], "o-", ms=3, color=f"C{i}",
                              label=f"ℓ = {l:g}")
            ts = sorted(c["eval"])
            axes[row, 1].plot(ts, [c["eval"][t][0] for t in ts], color=f"C{i}", lw=0.8,
                              label=f"ℓ = {l:g}")
        title = f"{opt} (mean of {len(seeds)} seeds)"
        axes[row, 0].set(xlabel="continuous time", ylabel="train loss (window mean)", title=title)
        axes[row, 1].set(xlabel="continuous time", ylabel="test accuracy", title=title)
        axes[row, 0].legend(fontsize=7)
        axes[row, 1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(dirs[0] / "svag.png", dpi=120)
    verdict = VERDICTS.get("svag_ladder")({}, {"gaps": {o: {m: g[f"{m}_detail"] for m in METRICS}
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
