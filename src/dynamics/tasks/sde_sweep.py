"""Sweep claims of the SDE family in one process: named points of the train task, each one vmapped
program over the claim's seeds, into ``<run>/points/<name>/``. ``sweep`` is the one helper both sweep
tasks (``svag``, ``sqrt_scaling``) use: it runs the points and reads every seed's rows back.

A point is built once (``build_point`` of its first seed); every seed then gets the init, noise and
probe streams ``build_point`` would give it (``seed_states``, vmapped), and all seeds share the point's
data set (``data.seed`` is fixed: the seeds vary the init and the batch draws only). Rows of every seed
go to the point's one ``metrics.jsonl`` (a ``seed`` column; every k-th step, k the point's stride), and
each seed's batch losses, averaged in equal windows of steps as they come, to the point's
``summary.json`` with its status. No per-seed figures or summaries: a sweep of hundreds of seeds stays a
few seconds of host work per point.

A point that fails (an exception while building or training) is recorded with its error and its seeds
count as missing; a diverged seed is recorded as such. The analyses never drop either silently:
``seed_rows`` returns every seed with its status, and the claims count what is missing.
"""

import dataclasses
import logging
import time
import traceback

import jax
import jax.numpy as jnp
import numpy as np

from dynamics.config import ClaimConfig, Config, OptimizerConfig, VmapConfig
from dynamics.errors import ConfigError, check
from dynamics.io import RunDir
from dynamics.io.load import read_metrics
from dynamics.train.state import TrainState, rng_streams

log = logging.getLogger("dynamics")


def check_sweep(cfg: Config, what: str, others: dict, key: str) -> None:
    """Checks across nodes of a sweep task (``svag``, ``sqrt_scaling``), before the run directory
    exists: a minibatch (``what`` names its role), test metrics on, and the other optimizers."""
    check(cfg.train.batch_size is not None, "train.batch_size", None, f"an integer ({what})")
    check(cfg.probes.eval.every > 0, "probes.eval.every", cfg.probes.eval.every,
          "> 0 (the points are compared at the eval times)")
    optimizer_configs(cfg, others, key)


def optimizer_configs(cfg: Config, others: dict, key: str) -> dict[str, OptimizerConfig]:
    """``optimizer.*`` first, then each of ``others`` (name -> hyperparameters over the defaults)."""
    known = {f.name for f in dataclasses.fields(OptimizerConfig)} - {"name"}
    out = {cfg.optimizer.name: cfg.optimizer}
    for name, overrides in (others or {}).items():
        overrides = dict(overrides or {})
        bad = sorted(set(overrides) - known)
        check(not bad, f"{key}.{name}", bad, f"hyperparameters among {', '.join(sorted(known))}")
        check(name not in out, f"{key}.{name}", name, f"an optimizer other than {cfg.optimizer.name}")
        out[name] = OptimizerConfig(name=name, **overrides)
    from dynamics.optim import OPTIMIZERS

    for name in out:
        OPTIMIZERS.get(name)
    return out


def point_config(cfg: Config, name: str, seeds: list[int], **changes) -> Config:
    """A train-task config of point ``name``: the base run with ``changes``, over ``seeds``; the data
    are fixed (``data.seed``, or the first seed when unset) so every seed trains on the same set."""
    data = changes.pop("data", cfg.data)
    if data.seed is None:
        data = dataclasses.replace(data, seed=int(seeds[0]))
    return dataclasses.replace(cfg, name=f"{cfg.name}/{name}", task="train", seed=seeds[0],
                               vmap=VmapConfig(seed=list(seeds)), claim=ClaimConfig(name="none"),
                               data=data, **changes)


def seed_states(point, seeds: list[int]) -> tuple[TrainState, jax.Array]:
    """Stacked initial states and probe keys of ``seeds`` for ``point`` (``build_point``'s ``Point``):
    seed s gets the params, optimizer state and noise key ``build_point`` gives seed s."""
    from dynamics.optim import build_optimizer

    streams = jax.vmap(rng_streams)(jnp.asarray(seeds))
    dtype = jax.tree.leaves(point.state.params)[0].dtype
    params = jax.vmap(point.model.init)(streams["init"])
    params = jax.tree.map(lambda p: p.astype(dtype), params)
    tx = build_optimizer(point.cfg.optimizer.name, **point.optimizer)
    step = jnp.zeros((len(seeds),), jnp.asarray(point.state.step).dtype)
    return TrainState(step, params, jax.vmap(tx.init)(params), streams["noise"]), streams["probe"]


def _tile(tree, n: int):
    return jax.tree.map(lambda a: jnp.broadcast_to(a, (n, *jnp.shape(a))), tree)


class _Collector:
    """``on_rows`` of the vmapped loop: the batch loss of every step summed into ``windows`` equal
    windows of the run's steps (per seed, as it comes), and only the rows at multiples of ``keep``
    steps (and the final one) kept, so hundreds of seeds × thousands of steps hold no per-step rows."""

    def __init__(self, n: int, steps: int, windows: int, keep: int, dt: float):
        self.steps, self.windows, self.keep, self.dt = steps, windows, keep, dt
        self.sums, self.counts = np.zeros((n, windows)), np.zeros((n, windows), int)
        self.rows: list[list[dict]] = [[] for _ in range(n)]

    def __call__(self, i: int, rows: list[dict]) -> None:
        for row in rows:
            step = row["step"]
            if step < self.steps and row.get("loss") is not None:
                w = step * self.windows // self.steps
                self.sums[i, w] += row["loss"]
                self.counts[i, w] += 1
            if step % self.keep == 0 or step >= self.steps:
                self.rows[i].append({**row, "time": step * self.dt})

    def window_loss(self, i: int) -> list[float | None]:
        return [float(s / c) if c else None for s, c in zip(self.sums[i], self.counts[i])]


def run_point(cfg: Config, prun: RunDir, *, windows: int, keep: int = 1) -> dict:
    """Train ``cfg`` for every seed of ``cfg.vmap.seed`` in one vmapped program. The rows at multiples
    of ``keep`` steps go to ``prun``'s metrics.jsonl (a ``seed`` column); the summary holds every
    seed's status and ``window_loss``: its batch losses averaged in ``windows`` equal windows of steps."""
    from dynamics.tasks.train import build_point
    from dynamics.train.loop import train_vmapped

    start, seeds = time.perf_counter(), [int(s) for s in cfg.vmap.seed]
    point = build_point(dataclasses.replace(cfg, seed=seeds[0], vmap=VmapConfig()))
    states, probe_keys = seed_states(point, seeds)
    n = len(seeds)
    collect = _Collector(n, point.steps, windows, keep, point.dt)
    probes = [p._replace(init_state=_tile(p.init_state, n), data=_tile(p.data, n))
              for p in point.probes]
    outcomes = train_vmapped(
        states, point.step_fn, *_tile((point.dataset.x_train, point.dataset.y_train), n),
        steps=point.steps, chunk=cfg.train.chunk, probes=probes, probe_keys=probe_keys,
        final_metrics=point.train_metrics, log_every=1, on_rows=collect)
    prun.log([{"seed": s, **r} for s, rows in zip(seeds, collect.rows) for r in rows])
    table = [{"seed": s, "status": o.status, "window_loss": collect.window_loss(i),
              **({"diverged_step": o.diverged_step} if o.diverged_step is not None else {})}
             for i, (s, o) in enumerate(zip(seeds, outcomes))]
    statuses = {o.status for o in outcomes}
    return {"status": "finished" if "finished" in statuses else "diverged", "seeds": table,
            "hparams": {**point.optimizer, "steps": point.steps}, **point.applied,
            "wall_time_s": time.perf_counter() - start}


def run_points(run: RunDir, points: dict[str, Config], *, windows: int,
               keep: dict[str, int] | None = None) -> dict[str, dict]:
    """Run every point (``run_point``; ``keep``: name -> its row stride, default 1); return name -> its
    summary (``status``, ``seeds`` or ``error``)."""
    out = {}
    for i, (name, pcfg) in enumerate(points.items()):
        prun = RunDir(run.path / "points" / name)
        prun.write_config(dataclasses.asdict(pcfg))
        log.info("%s: point %s (%d of %d), %d seeds", pcfg.name, name, i + 1, len(points),
                 len(pcfg.vmap.seed))
        try:
            summary = run_point(pcfg, prun, windows=windows, keep=(keep or {}).get(name, 1))
        except ConfigError:
            raise
        except Exception as err:  # noqa: BLE001 - recorded; its seeds count as missing
            log.error("point %s failed:\n%s", name, traceback.format_exc())
            summary = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
        prun.write_summary({"name": pcfg.name, **summary})
        out[name] = summary
    return out


def seed_rows(run: RunDir, name: str, summary: dict, seeds: list[int]) -> dict[int, dict]:
    """Seed -> ``{"status", "rows"}`` of point ``name`` (rows only for finished seeds); a seed the point
    did not report is ``missing``, every seed of a failed point ``failed``."""
    table = {p["seed"]: p for p in summary.get("seeds", [])}
    by_seed: dict[int, list] = {}
    if table:
        for row in read_metrics(run.path / "points" / name):
            by_seed.setdefault(row.pop("seed"), []).append(row)
    out = {}
    for seed in seeds:
        entry = table.get(seed)
        if entry is None:
            out[seed] = {"status": "failed" if summary.get("status") == "failed" else "missing"}
        elif entry["status"] != "finished":
            out[seed] = {"status": entry["status"]}
        else:
            out[seed] = {"status": "finished", "rows": by_seed.get(seed, []),
                         "window_loss": np.array(entry.get("window_loss", []), dtype=float)}
    return out


def sweep(run: RunDir, points: dict[str, Config], seeds: list[int], *, windows: int,
          keep: dict[str, int] | None = None) -> tuple[dict, dict]:
    """Run ``points`` (each one vmapped program over ``seeds``, ``run_point``) and read them back:
    returns the points' summaries and name -> seed -> ``{"status", "rows", "window_loss"}``."""
    summaries = run_points(run, points, windows=windows, keep=keep)
    return summaries, {n: seed_rows(run, n, summaries[n], seeds) for n in points}


def point_statuses(summaries: dict[str, dict]) -> dict[str, dict]:
    """Name -> status (and error) of every point, for the task's summary.json."""
    return {n: {"status": v.get("status"), **({"error": v["error"]} if "error" in v else {}),
                **({"wall_time_s": round(v["wall_time_s"], 1)} if "wall_time_s" in v else {})}
            for n, v in summaries.items()}


def missing_runs(points: dict[str, dict[int, dict]]) -> list[str]:
    """``<point> seed <s>: <status>`` for every seed run that did not finish."""
    return [f"{name} seed {seed}: {e['status']}" for name, by_seed in points.items()
            for seed, e in by_seed.items() if e["status"] != "finished"]


def complete_seeds(points: dict[str, dict[int, dict]], names: list[str]) -> list[int]:
    """Seeds finished at every point of ``names`` (the paired units of an analysis)."""
    sets = [{s for s, e in points.get(n, {}).items() if e["status"] == "finished"} for n in names]
    return sorted(set.intersection(*sets)) if sets else []


def mean_rows(by_seed: dict, seeds: list[int]) -> list[dict]:
    """The seed-mean loss (and time) per logged step of one point, for the run's own metrics.jsonl."""
    runs = [by_seed[s]["rows"] for s in seeds if by_seed.get(s, {}).get("status") == "finished"]
    if not runs:
        return []
    n = min(len(r) for r in runs)
    return [{"step": runs[0][i]["step"], "time": runs[0][i]["time"],
             "loss": float(np.mean([r[i]["loss"] for r in runs]))} for i in range(n)
            if all(r[i].get("loss") is not None for r in runs)]
