"""Sweep claims of the SDE family in one process: named points of the train task, each a vmapped
program over the claim's seeds (``dynamics.tasks.sweep.run_vmapped``) into ``<run>/points/<name>/``.

A point that fails (an exception while building or training) is recorded with its error and its seeds
count as missing; a diverged seed is recorded by ``run_vmapped``. The analyses never drop either
silently: ``seed_rows`` returns every seed with its status, and the claims count what is missing.
"""

import dataclasses
import logging
import traceback

from dynamics.config import ClaimConfig, Config, OptimizerConfig, VmapConfig
from dynamics.errors import ConfigError, check
from dynamics.io import RunDir
from dynamics.io.load import read_metrics

log = logging.getLogger("dynamics")


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
    """A train-task config of point ``name``: the base run with ``changes``, vmapped over ``seeds``."""
    return dataclasses.replace(cfg, name=f"{cfg.name}/{name}", task="train", seed=seeds[0],
                               vmap=VmapConfig(seed=list(seeds)), claim=ClaimConfig(name="none"),
                               **changes)


def run_points(run: RunDir, points: dict[str, Config]) -> dict[str, dict]:
    """Run every point; return name -> its summary (``status``, ``vmap_points`` or ``error``)."""
    from dynamics.tasks.sweep import run_vmapped

    out = {}
    for i, (name, pcfg) in enumerate(points.items()):
        prun = RunDir(run.path / "points" / name)
        prun.write_config(dataclasses.asdict(pcfg))
        log.info("%s: point %s (%d of %d)", pcfg.name, name, i + 1, len(points))
        try:
            summary = run_vmapped(pcfg, prun)
        except ConfigError:
            raise
        except Exception as err:  # recorded; its seeds count as missing in the claim
            log.error("point %s failed:\n%s", name, traceback.format_exc())
            summary = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
        prun.write_summary({"name": pcfg.name, **summary})
        out[name] = summary
    return out


def seed_rows(run: RunDir, name: str, summary: dict, seeds: list[int]) -> dict[int, dict]:
    """Seed -> ``{"status", "rows"}`` of point ``name`` (rows only for finished seeds); a seed the point
    did not report is ``missing``, every seed of a failed point ``failed``."""
    table = {p["seed"]: p for p in summary.get("vmap_points", [])}
    out = {}
    for seed in seeds:
        entry = table.get(seed)
        if entry is None:
            out[seed] = {"status": "failed" if summary.get("status") == "failed" else "missing"}
        elif entry["status"] != "finished":
            out[seed] = {"status": entry["status"]}
        else:
            out[seed] = {"status": "finished",
                         "rows": read_metrics(run.path / "points" / name / entry["dir"])}
    return out


def missing_runs(points: dict[str, dict[int, dict]]) -> list[str]:
    """``<point> seed <s>: <status>`` for every seed run that did not finish."""
    return [f"{name} seed {seed}: {e['status']}" for name, by_seed in points.items()
            for seed, e in by_seed.items() if e["status"] != "finished"]


def complete_seeds(points: dict[str, dict[int, dict]], names: list[str]) -> list[int]:
    """Seeds finished at every point of ``names`` (the paired units of an analysis)."""
    sets = [{s for s, e in points.get(n, {}).items() if e["status"] == "finished"} for n in names]
    return sorted(set.intersection(*sets)) if sets else []
