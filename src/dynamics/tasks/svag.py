r"""Task ``svag``: the SVAG ladder of the train task, every point in one process (claim ``svag_ladder``).

Each optimizer (``optimizer.*``, then ``sde.svag.others``) runs at every ℓ of ``sde.svag.ls`` with
``oracle.name=svag`` (lr, betas, eps and steps rescaled; ``time`` on every row), one vmapped program over
the claim's seeds ``seed, …, seed + sde.svag.seeds − 1`` per (optimizer, ℓ), into
``<run>/points/<optimizer>_l<ℓ>/`` (``dynamics.tasks.sde_sweep``). Seed i is the same init at every ℓ (the
batches differ), so the ladder's statistics are paired over seeds (``dynamics.svag``).

Rung ℓ takes m = ℓ² (adaptive) or ℓ (SGD) times the steps; it evaluates the test loss and accuracy every
m·``probes.eval.every`` steps, so every rung is measured at the same continuous times, and keeps its rows
every m steps (the times of ℓ = 1's steps). The metric ``train_loss`` is every step's batch loss averaged
in ``sde.svag.windows`` equal windows of continuous time (summed as the steps come, in
``dynamics.tasks.sde_sweep``). The claim is judged on the pre-declared metric ``sde.svag.metric``; the
distances of all three are reported. The run's own metrics.jsonl holds the seed-mean curve of the first
optimizer at ℓ = 1; ``figures/svag.png`` the mean curves of every rung.

``sde.svag.noise=false`` switches the gradient noise off: the training set is cut to one batch drawn
without replacement, so both SVAG batches are the whole set and g = ∇L exactly (experiments/svag/README.md).
"""

import dataclasses
import logging

import numpy as np

from dynamics.claims import judge, seed_list
from dynamics.config import Config
from dynamics.io import RunDir
from dynamics.plots import plot_training
from dynamics.svag import distance, is_adaptive
from dynamics.tasks.base import TASK_CHECKS, TASKS
from dynamics.tasks.sde_sweep import (
    check_sweep,
    complete_seeds,
    mean_rows,
    missing_runs,
    optimizer_configs,
    point_config,
    point_statuses,
    sweep,
)

log = logging.getLogger("dynamics")
METRICS = ("train_loss", "test_accuracy", "test_loss")


@TASK_CHECKS.register("svag")
def validate_svag(cfg: Config) -> None:
    check_sweep(cfg, "SVAG's batch", cfg.sde.svag.others, "sde.svag.others")


def curves(entry: dict, windows: int) -> dict:
    """Eval points by time t > 0 (t = 0 is the shared init) and the window means of the batch losses
    (``dynamics.tasks.sde_sweep``: every step's, in ``windows`` equal windows of continuous time)."""
    rows = entry["rows"]
    evals = {round(r["time"], 9): {m: r.get(m) for m in METRICS[1:]} for r in rows
             if r.get("test_loss") is not None and r["time"] > 0}
    t_end = max(r["time"] for r in rows)
    return {"eval": evals, "window_loss": entry["window_loss"],
            "window_t": (np.arange(windows) + 0.5) * t_end / windows}


def stack(cs: list[dict], metric: str, times: list[float]) -> np.ndarray:
    """(seeds, points) values of ``metric``: the train-loss windows or the eval points at ``times``."""
    if metric == "train_loss":
        return np.array([c["window_loss"] for c in cs])
    return np.array([[np.nan if c["eval"][t][metric] is None else c["eval"][t][metric]
                      for t in times] for c in cs])


def ladder(name: str, ls: list[float], by_point: dict, windows: int) -> dict:
    """The ladder of one optimizer: stacks of every metric over the seeds finished at every rung."""
    names = [f"{name}_l{l:g}" for l in ls]
    seeds = complete_seeds(by_point, names)
    present = [l for l, n in zip(ls, names) if any(e["status"] == "finished"
                                                   for e in by_point[n].values())]
    out = {"name": name, "required_ls": ls, "ls": present, "seeds": seeds, "stacks": {},
           "missing_runs": missing_runs({n: by_point[n] for n in names})}
    if len(seeds) < 3 or present != ls:
        return out
    cs = {l: [curves(by_point[n][s], windows) for s in seeds] for l, n in zip(ls, names)}
    times = sorted(set.intersection(*(set(c["eval"]) for v in cs.values() for c in v)))
    out["times"], out["window_t"] = times, cs[ls[0]][0]["window_t"]
    out["all"] = {m: {l: stack(cs[l], m, times) for l in ls} for m in METRICS}
    return out


def plot_ladders(ladders: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(ladders), 2, figsize=(11, 3.3 * len(ladders)), squeeze=False)
    for row, (opt, lad) in enumerate(ladders.items()):
        for i, l in enumerate((lad.get("all") or {}).get("train_loss", {})):
            for col, (metric, ts) in enumerate((("train_loss", lad["window_t"]),
                                                ("test_accuracy", lad["times"]))):
                axes[row, col].plot(ts, np.nanmean(lad["all"][metric][l], 0), "o-", ms=2,
                                    lw=0.8, color=f"C{i}", label=f"ℓ = {l:g}")
        title = f"{opt} (mean of {len(lad['seeds'])} seeds)"
        axes[row, 0].set(xlabel="continuous time", ylabel="train loss (window mean)", title=title)
        axes[row, 1].set(xlabel="continuous time", ylabel="test accuracy", title=title)
        axes[row, 0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def svag_points(cfg: Config, seeds: list[int]) -> tuple[dict[str, Config], dict[str, int]]:
    """(optimizer, ℓ) -> its point (SVAG at ℓ, eval every m·``probes.eval.every`` steps), and its row
    stride m (ℓ² adaptive, ℓ SGD): every rung keeps rows at the times of ℓ = 1's steps."""
    s = cfg.sde.svag
    data, train = cfg.data, cfg.train
    if not s.noise:  # one batch, drawn without replacement: both SVAG batches are the whole set
        data = dataclasses.replace(cfg.data, n_train=cfg.train.batch_size)
        train = dataclasses.replace(cfg.train, sampling="without_replacement")
    points, keep = {}, {}
    for name, opt in optimizer_configs(cfg, s.others, "sde.svag.others").items():
        for l in s.ls:
            m = round(l**2 if is_adaptive(name) else l)
            probes = dataclasses.replace(cfg.probes, eval=dataclasses.replace(
                cfg.probes.eval, every=cfg.probes.eval.every * m))
            oracle = dataclasses.replace(cfg.oracle, name="svag", svag_l=float(l))
            points[f"{name}_l{l:g}"] = point_config(
                cfg, f"{name}_l{l:g}", seeds, optimizer=opt, oracle=oracle, data=data, probes=probes,
                train=dataclasses.replace(train, chunk=probes.eval.every))
            keep[f"{name}_l{l:g}"] = m
    return points, keep


@TASKS.register("svag")
def run_svag(cfg: Config, run: RunDir) -> dict:
    """Run the ladder, judge ``claim.name`` (``svag_ladder``) on it, write the figure and summary."""
    s = cfg.sde.svag
    seeds = seed_list(cfg.seed, s.seeds)
    points, keep = svag_points(cfg, seeds)
    summaries, by_point = sweep(run, points, seeds, windows=s.windows, keep=keep)
    ls = [float(v) for v in s.ls]
    names = list(dict.fromkeys(n.rsplit("_l", 1)[0] for n in points))
    ladders = {n: ladder(n, ls, by_point, s.windows) for n in names}
    context = {"metric": s.metric, "ladders": {
        n: {**{k: v for k, v in lad.items() if k not in ("all", "times", "window_t")},
            "stacks": (lad.get("all") or {}).get(s.metric, {})} for n, lad in ladders.items()}}
    distances = {n: {m: [distance(a, b) for a, b in zip(list(st.values()), list(st.values())[1:])]
                     for m, st in lad["all"].items()} for n, lad in ladders.items() if "all" in lad}
    first = ladders[names[0]]
    rows = mean_rows(by_point[f"{names[0]}_l1"], first["seeds"] or seeds)
    run.log(rows)
    verdict = judge(cfg.claim.name, run.rows, context, cfg.claim.criteria)
    plot_training(run.rows, run.figures, title=f"{cfg.name}: {names[0]} ℓ=1, mean over seeds")
    plot_ladders(ladders, run.figures / "svag.png")
    return {"status": "finished" if rows else "failed",
            "hparams": {"lr": cfg.optimizer.lr, "optimizer": cfg.optimizer.name, "ls": ls,
                        "seeds": [seeds[0], seeds[-1]], "noise": s.noise},
            "points": point_statuses(summaries), "distances": distances, "verdict": verdict}
