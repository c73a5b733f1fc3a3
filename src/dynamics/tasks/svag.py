r"""Task ``svag``: the SVAG ladder of the train task, every point in one process (claim ``svag_ladder``).

Each optimizer (``optimizer.*``, then ``sde.svag.others``) runs at every ℓ of ``sde.svag.ls`` with
``oracle.name=svag`` (lr, betas, eps and steps rescaled; ``time`` on every row), one vmapped program over
the claim's seeds ``seed, …, seed + sde.svag.seeds − 1`` per (optimizer, ℓ), into
``<run>/points/<optimizer>_l<ℓ>/points/<i>/``. Seed i is the same init at every ℓ (the batches differ),
so the ladder's statistics are paired over seeds (``dynamics.svag``).

Curves are put on the continuous-time axis and compared at matched times: test accuracy and test loss at
the eval times (those of ℓ = 1 are a subset of every ℓ's), the train loss as the batch losses averaged in
``sde.svag.windows`` equal windows of continuous time. The claim is judged on the pre-declared metric
``sde.svag.metric``; the distances of all three metrics are reported. The run's own metrics.jsonl holds
the seed-mean curve of the first optimizer at ℓ = 1; ``figures/svag.png`` the mean curves of every rung.

``sde.svag.noise=false`` switches the gradient noise off: the training set is cut to one batch drawn
without replacement, so both SVAG batches are the whole set and g = ∇L exactly. Measured, it is not a
negative control of the train-loss ladder: every rung drives the train loss to 0, rung ℓ in SDE time
∝ 1/ℓ, so the curves converge to a degenerate step (experiments/svag/README.md).
"""

import dataclasses
import logging

import numpy as np

from dynamics.claims import judge, seed_list
from dynamics.config import Config
from dynamics.errors import check
from dynamics.io import RunDir
from dynamics.plots import plot_training
from dynamics.svag import distance
from dynamics.tasks.base import TASKS
from dynamics.tasks.sde_sweep import (complete_seeds, missing_runs, optimizer_configs, point_config,
                                      run_points, seed_rows)

log = logging.getLogger("dynamics")
METRICS = ("train_loss", "test_accuracy", "test_loss")


def validate_svag(cfg: Config) -> None:
    """Checks across nodes (each node checks its own keys when the config is built)."""
    s = cfg.sde.svag
    check(cfg.train.batch_size is not None, "train.batch_size", None, "an integer (SVAG's batch)")
    check(cfg.probes.eval.every > 0 or s.metric == "train_loss", "probes.eval.every",
          cfg.probes.eval.every, f"> 0 for sde.svag.metric={s.metric}")


def curves(rows: list[dict], windows: int) -> dict:
    """Eval points by time (accuracy, loss) and the window means of the batch losses."""
    evals = {round(r["time"], 12): (r["test_accuracy"], r["test_loss"]) for r in rows
             if r.get("test_accuracy") is not None}
    t_end = max(r["time"] for r in rows)
    tt, ll = np.array([(r["time"], r["loss"]) for r in rows
                       if r.get("loss") is not None and r["time"] < t_end]).T
    edges = np.linspace(0.0, t_end, windows + 1)
    idx = np.clip(np.searchsorted(edges, tt, side="right") - 1, 0, windows - 1)
    window_loss = np.array([ll[idx == i].mean() if np.any(idx == i) else np.nan
                            for i in range(windows)])
    return {"eval": evals, "window_loss": window_loss, "window_t": 0.5 * (edges[1:] + edges[:-1])}


def stack(cs: list[dict], metric: str, times: list[float]) -> np.ndarray:
    """(seeds, points) values of ``metric``: the train-loss windows or the eval points at ``times``."""
    if metric == "train_loss":
        return np.array([c["window_loss"] for c in cs])
    col = 0 if metric == "test_accuracy" else 1
    return np.array([[c["eval"][t][col] for t in times] for c in cs])


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
    cs = {l: [curves(by_point[n][s]["rows"], windows) for s in seeds] for l, n in zip(ls, names)}
    times = sorted(set.intersection(*(set(c["eval"]) for v in cs.values() for c in v)))
    out["all"] = {m: {l: stack(cs[l], m, times) for l in ls} for m in METRICS}
    out["curves"] = cs
    return out


def plot_ladders(ladders: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(ladders), 2, figsize=(11, 3.3 * len(ladders)), squeeze=False)
    for row, (opt, lad) in enumerate(ladders.items()):
        for i, (l, cs) in enumerate((lad.get("curves") or {}).items()):
            axes[row, 0].plot(cs[0]["window_t"], np.mean([c["window_loss"] for c in cs], 0), "o-",
                              ms=3, color=f"C{i}", label=f"ℓ = {l:g}")
            ts = sorted(set.intersection(*(set(c["eval"]) for c in cs)))
            acc = np.mean([[c["eval"][t][0] for t in ts] for c in cs], 0)
            axes[row, 1].plot(ts, acc, color=f"C{i}", lw=0.8, label=f"ℓ = {l:g}")
        title = f"{opt} (mean of {len(lad['seeds'])} seeds)"
        axes[row, 0].set(xlabel="continuous time", ylabel="train loss (window mean)", title=title)
        axes[row, 1].set(xlabel="continuous time", ylabel="test accuracy", title=title)
        axes[row, 0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def svag_points(cfg: Config, seeds: list[int]) -> dict[str, Config]:
    s = cfg.sde.svag
    data, train = cfg.data, cfg.train
    if not s.noise:  # one batch, drawn without replacement: both SVAG batches are the whole set
        data = dataclasses.replace(cfg.data, n_train=cfg.train.batch_size)
        train = dataclasses.replace(cfg.train, sampling="without_replacement")
    points = {}
    for name, opt in optimizer_configs(cfg, s.others, "sde.svag.others").items():
        for l in s.ls:
            oracle = dataclasses.replace(cfg.oracle, name="svag", svag_l=float(l))
            points[f"{name}_l{l:g}"] = point_config(cfg, f"{name}_l{l:g}", seeds, optimizer=opt,
                                                    oracle=oracle, data=data, train=train)
    return points


@TASKS.register("svag")
def run_svag(cfg: Config, run: RunDir) -> dict:
    """Run the ladder, judge ``claim.name`` (``svag_ladder``) on it, write the figure and summary."""
    validate_svag(cfg)
    s = cfg.sde.svag
    seeds = seed_list(cfg.seed, s.seeds)
    points = svag_points(cfg, seeds)
    summaries = run_points(run, points)
    by_point = {n: seed_rows(run, n, summaries[n], seeds) for n in points}
    ls = [float(v) for v in s.ls]
    names = list(dict.fromkeys(n.rsplit("_l", 1)[0] for n in points))
    ladders = {n: ladder(n, ls, by_point, s.windows) for n in names}
    context = {"metric": s.metric, "ladders": {
        n: {**{k: v for k, v in lad.items() if k not in ("all", "curves")},
            "stacks": (lad.get("all") or {}).get(s.metric, {})} for n, lad in ladders.items()}}
    distances = {n: {m: [distance(a, b) for a, b in zip(list(st.values()), list(st.values())[1:])]
                     for m, st in lad["all"].items()} for n, lad in ladders.items() if "all" in lad}
    first = ladders[names[0]]
    mean_rows = _mean_rows(by_point[f"{names[0]}_l1"], first["seeds"] or seeds)
    run.log(mean_rows)
    verdict = judge(cfg.claim.name, run.rows, context, cfg.claim.criteria)
    plot_training(run.rows, run.figures, title=f"{cfg.name}: {names[0]} ℓ=1, mean over seeds")
    plot_ladders(ladders, run.figures / "svag.png")
    return {"status": "finished" if mean_rows else "failed",
            "hparams": {"lr": cfg.optimizer.lr, "optimizer": cfg.optimizer.name, "ls": ls,
                        "seeds": seeds, "noise": s.noise},
            "points": {n: {"status": v.get("status"), **({"error": v["error"]} if "error" in v else {})}
                       for n, v in summaries.items()},
            "distances": distances, "verdict": verdict}


def _mean_rows(by_seed: dict, seeds: list[int]) -> list[dict]:
    """The seed-mean loss (and time) per logged step of one point, for the run's own metrics.jsonl."""
    runs = [by_seed[s]["rows"] for s in seeds if by_seed.get(s, {}).get("status") == "finished"]
    if not runs:
        return []
    n = min(len(r) for r in runs)
    return [{"step": runs[0][i]["step"], "time": runs[0][i]["time"],
             "loss": float(np.mean([r[i]["loss"] for r in runs]))} for i in range(n)
            if all(r[i].get("loss") is not None for r in runs)]
