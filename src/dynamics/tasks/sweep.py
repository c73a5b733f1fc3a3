"""Vmapped sweeps: a grid of hyperparameters and seeds trained in one compiled program.

``python -m dynamics.run +exp=eos vmap.lr=[0.25,0.5,1.0] vmap.seed=[0,1]`` builds every point of the
Cartesian product exactly as a single run would (its own data, init and noise streams from its seed, its
own traced hyperparameters in the optimizer state), stacks them along a leading axis and trains them with
``jax.vmap`` over the chunked ``lax.scan``; probes are vmapped too. Each point writes
``<run dir>/points/<i>/`` with ``.hydra/config.yaml`` (its own config), metrics.jsonl, summary.json and
figures, so ``dynamics.io.load_runs`` reads it like a multirun. The run directory's own summary.json
holds the grid and each point's status (``vmap_points``), and ``load_runs`` skips it.
"""

import dataclasses
import itertools
import math
import logging
import time

import jax
import jax.numpy as jnp

from dynamics.claims import THRESHOLDS, aggregate, columns_of
from dynamics.config import Config
from dynamics.errors import ConfigError
from dynamics.io import RunDir
from dynamics.plots import plot_threshold_ratio
from dynamics.tasks.base import Progress
from dynamics.tasks.train import build_point, summarize, vmap_axes, with_time
from dynamics.train.loop import train_vmapped

log = logging.getLogger("dynamics")


def grid_configs(cfg: Config) -> list[Config]:
    """One config per point of the Cartesian product of the ``vmap.*`` lists."""
    axes = vmap_axes(cfg)
    configs = []
    for values in itertools.product(*axes.values()):
        point = dict(zip(axes, values))
        seed = point.pop("seed", cfg.seed)
        args = {k.removeprefix("args."): point.pop(k) for k in list(point) if k.startswith("args.")}
        optimizer = dataclasses.replace(cfg.optimizer, **point, args={**cfg.optimizer.args, **args})
        empty = dataclasses.replace(cfg.vmap, **{k: None for k in axes if not k.startswith("args.")},
                                    args={})
        configs.append(dataclasses.replace(cfg, seed=int(seed), optimizer=optimizer, vmap=empty))
    return configs


def swept_value(optimizer, key: str):
    """The value of swept key ``key`` (``lr``, ``args.b1``) in one point's optimizer config."""
    if key.startswith("args."):
        return optimizer.args[key.removeprefix("args.")]
    return getattr(optimizer, key)


def stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def run_vmapped(cfg: Config, run: RunDir) -> dict:
    """Train every grid point of ``cfg.vmap`` at once; write one run directory per point."""
    start = time.perf_counter()
    configs = grid_configs(cfg)
    points = [build_point(c) for c in configs]
    steps = {p.steps for p in points}
    if len(steps) > 1:
        raise ConfigError(f"vmap={vmap_axes(cfg)} is invalid: allowed values that keep one step count "
                          f"(got {sorted(steps)})")
    first = points[0]
    dirs = [RunDir(run.path / "points" / str(i)) for i in range(len(points))]
    for d, c in zip(dirs, configs):
        d.write_config(dataclasses.asdict(c))
        d.write_summary({"name": cfg.name, "status": "running", "steps_completed": 0, "vmap": True},
                        final=False)
        d.mark(0)
    log.info("%s: vmapped sweep of %d points over %s", cfg.name, len(points), list(vmap_axes(cfg)))

    probes = [p._replace(init_state=stack([q.probes[j].init_state for q in points]),
                         data=stack([q.probes[j].data for q in points]))
              for j, p in enumerate(first.probes)]
    progress = Progress(first.steps, enabled=cfg.progress, desc=f"{cfg.name} ×{len(points)}")
    done = [0]

    def on_progress(n):  # every point's rows of the chunk are written: mark its end
        done[0] += n
        for d in dirs:
            d.mark(done[0])
        progress.update(n, **loss_range(dirs))

    try:
        outcomes = train_vmapped(
            stack([p.state for p in points]), first.step_fn,
            stack([p.dataset.x_train for p in points]), stack([p.dataset.y_train for p in points]),
            steps=first.steps, chunk=cfg.train.chunk, probes=probes,
            probe_keys=stack([p.probe_key for p in points]), final_metrics=first.train_metrics,
            on_rows=lambda i, rows: dirs[i].log(with_time(rows, points[i].dt)),
            log_every=cfg.train.log_every, on_progress=on_progress)
    except KeyboardInterrupt as err:  # each point says so, cut back to the last chunk end
        for d in dirs:
            d.write_summary({"name": cfg.name, **stopped(d, err), "vmap": True})
        raise
    finally:
        progress.close()
    elapsed = time.perf_counter() - start
    summaries = []
    for point, outcome, d in zip(points, outcomes, dirs):
        summary = summarize(point, d.rows, d.figures, outcome)
        d.write_summary({"name": cfg.name, **summary, "wall_time_s": elapsed / len(points),
                         "vmap": True})
        summaries.append(summary)
    swept = [k for k in vmap_axes(cfg) if k != "seed"]
    table = [{"dir": f"points/{i}", **{k: swept_value(c.optimizer, k) for k in swept}, "seed": c.seed,
              "status": s["status"], "passed": (s.get("verdict") or {}).get("passed"),
              **({"diverged_step": s["diverged_step"]} if "diverged_step" in s else {})}
             for i, (c, s) in enumerate(zip(configs, summaries))]
    statuses = [s["status"] for s in summaries]
    plot_points(cfg, points, dirs, swept, run.figures)
    return {"status": "finished" if "finished" in statuses else "diverged",
            "vmap_points": table,
            "hparams": {"lr": cfg.optimizer.lr, "vmap": vmap_axes(cfg)},
            "verdict": claim_over_seeds(cfg, configs, summaries, swept)}


def stopped(d: RunDir, err: BaseException) -> dict:
    """A point's summary fields when the sweep is interrupted: ``diverged`` at its step if it had
    already diverged (its rows end there), else ``interrupted`` at the last chunk end."""
    summary = d.interrupted(err)
    last = d.rows[-1] if d.rows else {}
    if last.get("loss", 0.0) is None:
        return {**summary, "status": "diverged", "diverged_step": last["step"]}
    return summary


def loss_range(dirs: list[RunDir]) -> dict:
    """The points' latest losses for the progress line: lowest, median and highest (NaN: diverged)."""
    losses = [d.rows[-1].get("loss") for d in dirs if d.rows]
    finite = sorted(v for v in losses if v is not None and math.isfinite(v))
    if not finite:
        return {}
    return {"loss_min": finite[0], "loss_median": finite[len(finite) // 2], "loss_max": finite[-1],
            "diverged": len(losses) - len(finite)}


def claim_over_seeds(cfg: Config, configs: list[Config], summaries: list[dict],
                     swept: list[str]) -> dict:
    """The claim over each group of points that differ only in their seed (``dynamics.claims.seeds``);
    passed when every group passes. One group: its verdict is the run's verdict."""
    groups: dict[tuple, list[dict]] = {}
    for c, s in zip(configs, summaries):
        key = tuple(swept_value(c.optimizer, k) for k in swept)
        groups.setdefault(key, []).append({"seed": c.seed, **s})
    verdicts = []
    for key, entries in groups.items():
        v = aggregate(entries, min_pass_fraction=cfg.claim.min_pass_fraction, rule=cfg.claim.rule)
        verdicts.append({**dict(zip(swept, key)), **v})
    if len(verdicts) == 1:
        return verdicts[0]
    results = [v.get("passed") for v in verdicts]
    passed = None if None in results else all(results)
    failed = [f"{', '.join(f'{k}={v[k]:g}' for k in swept)}: {'; '.join(v['failed'][:2])}"
              for v in verdicts if v.get("passed") is False]
    return {"passed": passed, "failed": failed, "groups": verdicts}


def plot_points(cfg: Config, points: list, dirs: list[RunDir], swept: list[str], figures) -> None:
    """``figures/threshold_ratio.png``: every point's stability metric over its own threshold (the
    claim figure of an EoS claim over seeds and step sizes); nothing for optimizers without one."""
    if cfg.claim.name == "eos_sgd":  # its own figure: batch sharpness and λ_max over 2/η per seed
        from dynamics.claims.eos_sgd import plot_claim

        runs = [(p.cfg.seed, p.optimizer["lr"], columns_of(d.rows)) for p, d in zip(points, dirs)]
        plot_claim(runs, figures / "batch_sharpness_ratio.png", name=cfg.name,
                   batch_size=points[0].optimizer["batch_size"])
    if cfg.optimizer.name not in THRESHOLDS:
        return
    stability = THRESHOLDS.get(cfg.optimizer.name)
    series, groups = [], {}
    for point, d in zip(points, dirs):
        columns = columns_of(d.rows)
        if stability.metric not in columns:
            return
        threshold = stability.threshold(point.hparams, columns)
        key = tuple(swept_value(point.cfg.optimizer, k) for k in swept)
        group = groups.setdefault(key, len(groups))
        label = ", ".join(f"{k}={v:g}" for k, v in zip(swept, key)) or f"{len(points)} seeds"
        series.append((label, group, columns["step"], columns[stability.metric] / threshold))
    plot_threshold_ratio(series, figures / "threshold_ratio.png", metric=stability.metric,
                         threshold_label=stability.label_for(points[0].hparams),
                         title=f"{cfg.name}: {cfg.optimizer.name}, seeds "
                               f"{sorted({p.cfg.seed for p in points})}")
