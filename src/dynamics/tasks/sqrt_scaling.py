r"""Task ``sqrt_scaling``: batch-size scaling rules of the train task in one process (claim
``scaling_rule``).

Each optimizer (``optimizer.*``, then ``sde.sqrt_scaling.others``) runs a base point (κ = 1, batch B0 =
``train.batch_size``) and, for every rule of ``sde.sqrt_scaling.rules`` and κ of ``kappas``, a point at
batch κ·B0 with 1/κ × the steps (``scaling.rule``, ``scaling.kappa``), each one vmapped program over the
claim's seeds ``seed, …, seed + seeds − 1`` into ``<run>/points/<name>/`` (``dynamics.tasks.sde_sweep``).
``data.seed`` fixes the data, so the seeds vary the init and the batch draws; every point of a seed shares
the base run's init. A scaled point evaluates every ``probes.eval.every``/κ steps (the base's samples seen).

Gap of a point to its base, on the mean curves over the seeds finished at every point of the optimizer
(against samples seen = step × batch): max(max over the last 75 % of the eval points of |acc_κ − acc_1|,
max over the last 75 % of ``windows`` sample windows of |L_κ/L_1 − 1|). ``seed_floor``: the same gap
between the means of the two halves of the base run's seeds, /√2 (the noise level of a gap).
"""

import dataclasses
import logging

import numpy as np

from dynamics.claims import judge, seed_list
from dynamics.config import Config
from dynamics.io import RunDir
from dynamics.plots import plot_training
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


@TASK_CHECKS.register("sqrt_scaling")
def validate_sqrt_scaling(cfg: Config) -> None:
    check_sweep(cfg, "the base batch", cfg.sde.sqrt_scaling.others, "sde.sqrt_scaling.others")


def curves(entry: dict, batch: int, windows: int) -> dict:
    """Eval points by samples seen and the window means of the batch losses (``window_loss``: every
    step's, in ``windows`` equal windows of the run's steps, i.e. of samples seen)."""
    rows = entry["rows"]
    last = max(r["step"] for r in rows)
    evals = {r["step"] * batch: r["test_accuracy"] for r in rows if r.get("test_accuracy") is not None}
    return {"eval": evals, "window_loss": entry["window_loss"],
            "window_x": (np.arange(windows) + 0.5) * last * batch / windows}


def gap(run: dict, base: dict) -> dict:
    common = sorted(set(run["eval"]) & set(base["eval"]))
    common = common[len(common) // 4:]
    acc = max(abs(run["eval"][s] - base["eval"][s]) for s in common)
    start = len(base["window_loss"]) // 4
    loss = float(np.max(np.abs(run["window_loss"][start:] / base["window_loss"][start:] - 1.0)))
    return {"test_accuracy_abs": float(acc), "train_loss_rel": loss, "gap": max(float(acc), loss)}


def mean_curves(group: list[dict]) -> dict:
    common = sorted(set.intersection(*(set(c["eval"]) for c in group)))
    return {"eval": {s: float(np.mean([c["eval"][s] for c in group])) for s in common},
            "window_loss": np.mean([c["window_loss"] for c in group], axis=0),
            "window_x": group[0]["window_x"]}


def scaling_points(cfg: Config, seeds: list[int]) -> dict[str, tuple[str, str, float, Config]]:
    """name -> (optimizer, rule, κ, config): batch κ·B0 for 1/κ × the steps, eval every
    ``probes.eval.every``/κ steps (the base's samples seen)."""
    s = cfg.sde.sqrt_scaling
    points = {}
    for name, opt in optimizer_configs(cfg, s.others, "sde.sqrt_scaling.others").items():
        grid = [("base", "none", 1.0)] + [(f"{r}_k{k:g}", r, float(k)) for r in s.rules
                                          for k in s.kappas]
        for label, rule, kappa in grid:
            scaling = dataclasses.replace(cfg.scaling, rule=rule, kappa=kappa)
            every = cfg.probes.eval.every * round(1 / kappa)
            probes = dataclasses.replace(cfg.probes, eval=dataclasses.replace(cfg.probes.eval,
                                                                               every=every))
            train = dataclasses.replace(cfg.train, chunk=every)
            points[f"{name}_{label}"] = (name, rule, kappa, point_config(
                cfg, f"{name}_{label}", seeds, optimizer=opt, scaling=scaling, probes=probes,
                train=train))
    return points


def analyze(cfg: Config, run: RunDir, points: dict, by_point: dict) -> tuple[dict, dict, dict]:
    """Gaps (optimizer -> rule -> κ -> gap), seed floors and mean curves for the figure."""
    s = cfg.sde.sqrt_scaling
    gaps, floors, mean = {}, {}, {}
    for opt in dict.fromkeys(p[0] for p in points.values()):
        names = [n for n, p in points.items() if p[0] == opt]
        shared = complete_seeds(by_point, names)
        if len(shared) < 2 or f"{opt}_base" not in names:
            continue
        cs = {n: [curves(by_point[n][sd], points[n][3].train.batch_size *
                         (points[n][2] if points[n][1] != "none" else 1.0), s.windows)
                  for sd in shared] for n in names}
        mean.update({n: mean_curves(v) for n, v in cs.items()})
        base = mean[f"{opt}_base"]
        half = len(shared) // 2
        b = cs[f"{opt}_base"]
        floors[opt] = gap(mean_curves(b[:half]), mean_curves(b[half:2 * half]))["gap"] / np.sqrt(2)
        gaps[opt] = {}
        for n in names:
            _, rule, kappa, _ = points[n]
            if rule != "none":
                gaps[opt].setdefault(rule, {})[kappa] = gap(mean[n], base)
    return gaps, floors, mean


@TASKS.register("sqrt_scaling")
def run_sqrt_scaling(cfg: Config, run: RunDir) -> dict:
    """Run every point, judge ``claim.name`` (``scaling_rule``), write the figure and summary."""
    s = cfg.sde.sqrt_scaling
    seeds = seed_list(cfg.seed, s.seeds)
    points = scaling_points(cfg, seeds)
    configs = {n: p[3] for n, p in points.items()}
    keep = {n: c.probes.eval.every for n, c in configs.items()}
    summaries, by_point = sweep(run, configs, seeds, windows=s.windows, keep=keep)
    gaps, floors, mean = analyze(cfg, run, points, by_point)
    context = {"gaps": {o: {r: {k: g["gap"] for k, g in by_k.items()} for r, by_k in by_r.items()}
                        for o, by_r in gaps.items()},
               "kappas": [float(k) for k in s.kappas], "adaptive_rule": s.adaptive_rule,
               "sgd_rule": s.sgd_rule, "missing_runs": missing_runs(by_point), "seed_floor": floors}
    first = next(iter(points))
    run.log(mean_rows(by_point[first], seeds))
    verdict = judge(cfg.claim.name, run.rows, context, cfg.claim.criteria)
    plot_training(run.rows, run.figures, title=f"{cfg.name}: {first}, mean over seeds")
    plot_scaling(points, mean, run.figures / "sqrt_scaling.png")
    return {"status": "finished" if run.rows else "failed",
            "hparams": {"lr": cfg.optimizer.lr, "optimizer": cfg.optimizer.name, "seeds": seeds,
                        "batch_size": cfg.train.batch_size, "kappas": list(s.kappas)},
            "points": point_statuses(summaries),
            "gaps": {o: {r: {f"{k:g}": g for k, g in by_k.items()} for r, by_k in by_r.items()}
                     for o, by_r in gaps.items()},
            "verdict": verdict}


def plot_scaling(points: dict, mean: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    opts = list(dict.fromkeys(p[0] for p in points.values()))
    fig, axes = plt.subplots(len(opts), 2, figsize=(11, 3.3 * len(opts)), squeeze=False)
    for row, opt in enumerate(opts):
        for i, (n, (o, rule, kappa, _)) in enumerate((n, p) for n, p in points.items() if p[0] == opt):
            if n not in mean:
                continue
            c, style = mean[n], ":" if rule == "linear" else "-"
            label = "κ = 1 (base)" if rule == "none" else f"{rule}, κ = {kappa:g}"
            axes[row, 0].plot(c["window_x"], c["window_loss"], style, marker="o", ms=3,
                              color=f"C{i}", label=label)
            xs = sorted(c["eval"])
            axes[row, 1].plot(xs, [c["eval"][x] for x in xs], style, lw=0.8, color=f"C{i}")
        axes[row, 0].set(xlabel="samples seen", ylabel="train loss (window mean)", title=opt)
        axes[row, 1].set(xlabel="samples seen", ylabel="test accuracy", title=opt)
        axes[row, 0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
