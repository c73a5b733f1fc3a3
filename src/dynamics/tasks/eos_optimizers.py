"""Task ``eos_optimizers``: the edge-of-stability claim for several optimizers in one command.

Each entry of ``eos_optimizers.runs`` (label → ``optimizer``: ``optimizer.*`` keys, ``probe``: options of
the curvature probe, ``criteria``: overrides of claim ``eos``'s criteria) becomes a train-task run of
claim ``eos`` over the claim's seeds (vmapped), on the same model and data, in
``<run dir>/optimizers/<label>/``. The probe is the one the optimizer's threshold reads (``sharpness``
λ_max(H) or ``precond_sharpness`` λ_max(P⁻¹H), from ``dynamics.optim.thresholds``), every
``eos_optimizers.every`` steps with the tolerance of ``probes.sharpness``. The claim ``eos_optimizers``
``eos_optimizers`` (``dynamics.claims.eos``) passes when every listed optimizer passes its own claim;
an optimizer that failed, or has no known threshold, fails it. ``figures/eos_optimizers.png`` has one panel per optimizer: each seed's metric
over its own threshold.
"""

import dataclasses
import logging

from dynamics.claims import columns_of, failure_line, judge
from dynamics.claims.eos import THRESHOLDS, not_applicable_reason, required_probe
from dynamics.config import Config, OptimizerConfig
from dynamics.errors import ConfigError
from dynamics.io import RunDir, read_metrics
from dynamics.io.writer import read_summary
from dynamics.plots import plot_threshold_panels
from dynamics.tasks.base import SEEDS_VMAPPED, TASK_CHECKS, TASKS
from dynamics.tasks.seeds import run_child

log = logging.getLogger("dynamics")
RUN_KEYS = ("optimizer", "probe", "criteria")
SEEDS_VMAPPED.add("eos_optimizers")


def optimizer_config(cfg: Config, label: str, spec: dict) -> Config:
    """The train-task config of entry ``label`` of ``eos_optimizers.runs`` (checked, nothing built)."""
    key = f"eos_optimizers.runs.{label}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{key}={spec!r} is invalid: allowed a mapping with keys {', '.join(RUN_KEYS)}")
    for k in spec:
        if k not in RUN_KEYS:
            raise ConfigError(f"{key}.{k} is invalid: unknown key; allowed keys: {', '.join(RUN_KEYS)}")
    fields = [f.name for f in dataclasses.fields(OptimizerConfig)]
    options = dict(spec.get("optimizer") or {})
    for k in options:
        if k not in fields:
            raise ConfigError(f"{key}.optimizer.{k} is invalid: unknown key; allowed keys: "
                              f"{', '.join(fields)}")
    optimizer = dataclasses.replace(cfg.optimizer, **options)
    criteria = dict(spec.get("criteria") or {})
    probes = cfg.probes
    if not_applicable_reason("eos", optimizer.name) is None:
        from dynamics.tasks.train import claim_probe_node

        probe = required_probe("eos", optimizer.name, criteria)
        node = claim_probe_node(cfg.probes, probe, cfg.eos_optimizers.every)
        try:
            node = dataclasses.replace(node, **(spec.get("probe") or {}))
        except TypeError as err:
            raise ConfigError(f"{key}.probe is invalid: {err}") from None
        off = {f.name: dataclasses.replace(getattr(probes, f.name), every=0)
               for f in dataclasses.fields(probes) if f.name in ("sharpness", "precond_sharpness")}
        probes = dataclasses.replace(probes, **{**off, probe: node})
    return dataclasses.replace(cfg, task="train", name=f"{cfg.name}/{label}", optimizer=optimizer,
                               probes=probes, claim=dataclasses.replace(cfg.claim, name="eos",
                                                                        criteria=criteria))


def optimizer_configs(cfg: Config) -> dict[str, Config]:
    """Every entry's config; fails when there is none."""
    runs = cfg.eos_optimizers.runs or {}
    only = cfg.eos_optimizers.only
    if only is not None:
        unknown = [label for label in only if label not in runs]
        if unknown:
            raise ConfigError(f"eos_optimizers.only={list(only)} is invalid: {unknown[0]!r} is not an "
                              f"entry of eos_optimizers.runs: allowed {', '.join(runs)}")
        runs = {label: runs[label] for label in only}
    if not runs:
        raise ConfigError("eos_optimizers.runs={} is invalid: allowed a mapping label -> "
                          "{optimizer: {...}, probe: {...}, criteria: {...}} with at least one entry")
    return {label: optimizer_config(cfg, label, spec) for label, spec in runs.items()}


def _ratio_series(sub_run: RunDir, summary: dict, name: str) -> tuple[str, str, list]:
    """(metric, threshold label, [(seed, steps, metric/threshold)]) of one optimizer's points."""
    metric, label, series = "", "", []
    entries = summary.get("vmap_points") or [{"dir": ".", "seed": summary.get("hparams", {}).get("seed")}]
    for entry in entries:  # a vmapped claim over seeds, or one run (claim.seeds=1)
        point = read_summary(sub_run.path / entry["dir"]) or summary
        v = point.get("verdict") or {}
        columns = columns_of(read_metrics(sub_run.path / entry["dir"]))
        metric = v.get("metric") or metric
        if v.get("threshold") and metric in columns:
            series.append((entry["seed"], columns["step"], columns[metric] / v["threshold"]))
            label = THRESHOLDS.get(name).label_for(point.get("hparams") or {})
    return metric, label, series


@TASK_CHECKS.register("eos_optimizers")
def check_eos_optimizers(cfg: Config) -> None:
    """Every entry is a train-task run: each one's config is validated like a run of its own."""
    from dynamics.errors import check
    from dynamics.validation import validate

    check(cfg.eos_optimizers.every > 0 and cfg.eos_optimizers.every % cfg.train.chunk == 0,
          "eos_optimizers.every", cfg.eos_optimizers.every,
          f"a positive multiple of train.chunk={cfg.train.chunk}")
    for label, sub in optimizer_configs(cfg).items():
        try:
            validate(sub)
        except ConfigError as err:
            raise ConfigError(f"eos_optimizers.runs.{label}: {err}") from None


@TASKS.register("eos_optimizers")
def run_eos_optimizers(cfg: Config, run: RunDir) -> dict:
    """Run claim ``eos`` for every optimizer of ``eos_optimizers.runs`` and judge them together."""
    from dynamics.tasks.train import run_train

    configs = optimizer_configs(cfg)
    results, panels = {}, []
    for label, sub in configs.items():
        sub_run = RunDir(run.path / "optimizers" / label)
        log.info("%s: %s (%s, lr %g)", cfg.name, label, sub.optimizer.name, sub.optimizer.lr)
        summary = run_child(run_train, sub, sub_run, label)
        log.info("%s: %s %s %s", cfg.name, label, summary["status"],
                 failure_line(summary.get("verdict") or {}))
        results[label] = summary
        metric, threshold_label, series = _ratio_series(sub_run, summary, sub.optimizer.name)
        panels.append((f"{label} ({sub.optimizer.name}, η={sub.optimizer.lr:g})", metric,
                       threshold_label, series))
    plot_threshold_panels(panels, run.figures / "eos_optimizers.png", title=cfg.name)
    statuses = [s["status"] for s in results.values()]
    return {"status": "finished" if "finished" in statuses else statuses[0],
            "hparams": {label: {"optimizer": c.optimizer.name, "lr": c.optimizer.lr}
                        for label, c in configs.items()},
            "optimizer_runs": [{"dir": f"optimizers/{label}", "status": s["status"],
                                "passed": (s.get("verdict") or {}).get("passed")}
                               for label, s in results.items()],
            "verdict": judge(cfg.claim.name, [], {"results": results}, cfg.claim.criteria)}

