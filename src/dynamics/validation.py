"""Value checks of a composed ``Config``, in one phase before anything is built or compiled.

``validate`` raises ``ConfigError`` with one line naming the key and the allowed values; ``check_keys``
rejects keys the schema does not know (also ones added with ``+``) outside the free mappings;
``estimate_memory`` refuses data sizes that cannot fit before anything is allocated.
"""

import dataclasses
import os
import typing
from typing import Any

from dynamics.config import Config, OptimizerConfig
from dynamics.errors import ConfigError, check

PRECISIONS = ("float32", "float64")


def validate(cfg: Config) -> None:
    """Check values before anything is built; raise ``ConfigError`` naming the key."""
    from dynamics.data import BATCH_SAMPLERS, DATASETS
    from dynamics.losses import LOSSES
    from dynamics.models.base import ACTIVATIONS, KERNEL_INITS, MODELS
    from dynamics.optim.registry import check_optimizer
    from dynamics.tasks import TASKS
    from dynamics.claims import check_criteria
    from dynamics.claims.seeds import RULES

    TASKS.get(cfg.task)
    from dynamics.tasks.base import TASK_CHECKS

    if cfg.task in TASK_CHECKS:
        TASK_CHECKS.get(cfg.task)(cfg)
    MODELS.get(cfg.model.name)
    ACTIVATIONS.get(cfg.model.activation)
    KERNEL_INITS.get(cfg.model.init)
    DATASETS.get(cfg.data.name)
    check_optimizer(cfg.optimizer.name, cfg.optimizer.args)
    _check_targets(cfg)
    LOSSES.get(cfg.train.loss)
    BATCH_SAMPLERS.get(cfg.train.sampling)
    check_criteria(cfg.claim.name, cfg.claim.criteria)
    check(cfg.claim.seeds >= 1, "claim.seeds", cfg.claim.seeds, "an integer >= 1")
    check(0 < cfg.claim.min_pass_fraction <= 1, "claim.min_pass_fraction",
          cfg.claim.min_pass_fraction, "a float in (0, 1]")
    check(cfg.claim.rule in RULES, "claim.rule", cfg.claim.rule, " | ".join(RULES))
    from dynamics.scaling import SCALING_RULES
    from dynamics.train.oracles import ORACLES

    ORACLES.get(cfg.oracle.name)
    SCALING_RULES.get(cfg.scaling.rule)
    check(cfg.scaling.kappa > 0, "scaling.kappa", cfg.scaling.kappa, "a float > 0")
    check(cfg.oracle.svag_l >= 1, "oracle.svag_l", cfg.oracle.svag_l, "a float >= 1")
    check(cfg.oracle.label_noise_std >= 0, "oracle.label_noise_std", cfg.oracle.label_noise_std,
          "a float >= 0")
    check(cfg.precision in PRECISIONS, "precision", cfg.precision, " | ".join(PRECISIONS))

    _validate_optimizer(cfg.optimizer)
    if cfg.task == "train":
        _check_claim_probe(cfg)

    t = cfg.train
    check(t.steps > 0, "train.steps", t.steps, "an integer > 0")
    check(t.chunk > 0, "train.chunk", t.chunk, "an integer > 0")
    check(t.log_every > 0, "train.log_every", t.log_every, "an integer > 0")
    check(t.batch_size is None or t.batch_size > 0, "train.batch_size", t.batch_size,
          "null (full batch) or an integer > 0")
    swept = {k: v for k, v in dataclasses.asdict(cfg.vmap).items() if k != "args" and v is not None}
    swept.update({f"args.{k}": v for k, v in (cfg.vmap.args or {}).items()})
    for key, values in swept.items():
        check(len(values) > 0, f"vmap.{key}", values, "a non-empty list (or null: no sweep)")
    # the train task runs a claim over several seeds as a vmapped sweep too
    vmapped = bool(swept) or (cfg.task == "train" and cfg.claim.seeds > 1)
    check(not (vmapped and cfg.resume), "resume", cfg.resume,
          "false for a vmap.* sweep or claim.seeds > 1 (set claim.seeds=1 to checkpoint one seed)")
    check(not (vmapped and cfg.checkpoint.every), "checkpoint.every", cfg.checkpoint.every,
          "0 for a vmap.* sweep or claim.seeds > 1 (checkpoints are per run; set claim.seeds=1)")
    _validate_vmap(cfg.optimizer, swept)
    c = cfg.checkpoint
    check(c.every >= 0 and c.every % t.chunk == 0, "checkpoint.every", c.every,
          f"0 (off) or a positive multiple of train.chunk={t.chunk}")
    check(c.keep > 0, "checkpoint.keep", c.keep, "an integer > 0")
    for probe in dataclasses.fields(cfg.probes):
        _validate_probe(probe.name, getattr(cfg.probes, probe.name), t.chunk)
        _validate_tracking(probe.name, getattr(cfg.probes, probe.name), cfg.optimizer.name)
    for key in ("n_train", "n_test"):
        value = getattr(cfg.data, key)
        check(value is None or value > 0, f"data.{key}", value, "null (all) or an integer > 0")
    _check_memory(cfg, swept)


def _validate_optimizer(o: OptimizerConfig, key=lambda name: f"optimizer.{name}") -> None:
    """The hyperparameters' ranges; ``key`` names the offending key in the error."""
    check(o.lr > 0, key("lr"), o.lr, "a float > 0")
    for name in ("momentum", "b1", "b2"):
        value = getattr(o, name)
        check(0 <= value < 1, key(name), value, "a float in [0, 1)")
    check(o.eps >= 0, key("eps"), o.eps, "a float >= 0")
    check(o.weight_decay >= 0, key("weight_decay"), o.weight_decay, "a float >= 0")


def _validate_vmap(o: OptimizerConfig, swept: dict[str, list]) -> None:
    """Every value of every ``vmap.*`` list goes through the scalar key's check."""
    for name, values in swept.items():
        for value in values:
            if name == "seed":  # any integer, like the scalar ``seed`` (the schema checks the type)
                continue
            if name.startswith("args."):
                _validate_swept_arg(o, name.removeprefix("args."), values, value)
                continue
            try:
                _validate_optimizer(dataclasses.replace(o, **{name: value}))
            except ConfigError as err:
                allowed = str(err).split(" is invalid: allowed ", 1)[-1]
                raise ConfigError(f"vmap.{name}={values} is invalid: {value} is not allowed; "
                                  f"allowed {allowed} for each value") from None


def _check_targets(cfg: Config) -> None:
    """Your own components: the optimizer target is imported and built (an optax transformation), the
    model target imported (what it returns is checked when the model is built, once the data's shape is
    known), an npz data set read."""
    from dynamics.optim.registry import TARGET, build_target
    from dynamics.targets import load_target

    if cfg.optimizer.name == TARGET:
        build_target(cfg.optimizer.target, cfg.optimizer.lr,
                     {**cfg.optimizer.args, **cfg.optimizer.kwargs})
    if cfg.model.name == "target":
        load_target(cfg.model.target, "model.target")
    if cfg.data.name == "npz":
        from dynamics.data.files import read_npz

        arrays = read_npz(cfg.data.path)
        for key, split in (("n_train", "x_train"), ("n_test", "x_test")):
            value, have = getattr(cfg.data, key), len(arrays[split])
            check(value is None or value <= have, f"data.{key}", value,
                  f"null (all) or 1..{have} (the {split} array of data.path)")


def _check_claim_probe(cfg: Config) -> None:
    """The probe a train-task claim reads must be on (a claim with no known threshold reads none)."""
    from dynamics.claims.eos import required_probe

    probe = required_probe(cfg.claim.name, cfg.optimizer.name, cfg.claim.criteria)
    if probe is not None:  # (the train task switches it on like probes.sharpness when that one is on)
        every = max(getattr(cfg.probes, probe).every, cfg.probes.sharpness.every)
        check(every > 0, f"probes.{probe}.every", getattr(cfg.probes, probe).every,
              f"a positive multiple of train.chunk: claim {cfg.claim.name!r} reads {probe}")
    from dynamics.claims.eos_sgd import REQUIRED_PROBES

    for probe in REQUIRED_PROBES.get(cfg.claim.name, ()):  # claims that read several probes
        check(getattr(cfg.probes, probe).every > 0, f"probes.{probe}.every",
              getattr(cfg.probes, probe).every,
              f"a positive multiple of train.chunk: claim {cfg.claim.name!r} reads {probe}")


def _validate_swept_arg(o: OptimizerConfig, name: str, values, value) -> None:
    """``vmap.args.<name>``: a number (traced, so vmappable) that the optimizer takes."""
    from dynamics.optim.registry import check_optimizer, is_traced

    check(is_traced(value), f"vmap.args.{name}", values, "a list of numbers (only numeric arguments are traced)")
    check_optimizer(o.name, {**o.args, name: value})


# Bytes per float of the generated arrays, and the share of the available memory a run may plan for.
ITEMSIZE = {"float32": 4, "float64": 8}
MEMORY_FRACTION = 0.8


def available_memory() -> int | None:
    """Bytes of host memory available now (Linux ``MemAvailable``; else the physical size), or None."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def estimate_memory(cfg: "Config", points: int = 1) -> int:
    """A lower estimate of the bytes a ``train`` run allocates for its generated data set: inputs,
    the teacher's hidden layer and outputs over all examples, and one full-batch activation of the
    model per example (0 for data sets read from disk, whose size is fixed)."""
    d = cfg.data
    if d.name not in ("synthetic", "teacher"):
        return 0
    n = (d.n_train or 1000) + (d.n_test or 1000)
    per_example = d.dim + d.teacher_width + max(d.num_classes, d.out_dim)
    per_example += sum(cfg.model.widths) if cfg.model.name != "cnn" else 0
    return n * per_example * ITEMSIZE.get(cfg.precision, 4) * points


def _check_memory(cfg: "Config", swept: dict[str, list]) -> None:
    if cfg.task != "train":
        return
    points = 1
    for values in swept.values():
        points *= max(len(values), 1)
    need, have = estimate_memory(cfg, points), available_memory()
    if have is None or need <= MEMORY_FRACTION * have:
        return
    raise ConfigError(f"data.n_train={cfg.data.n_train} is invalid: allowed a size that fits in memory "
                      f"(needs ~{need / 2**30:.1f} GiB for the data and one forward pass"
                      f"{f' of {points} vmapped points' if points > 1 else ''}; "
                      f"{have / 2**30:.1f} GiB available)")


def _free_mapping(tp) -> bool:
    origin = typing.get_origin(tp)
    return tp is dict or origin is dict or tp is Any


def _schema_of(tp):
    """The dataclass a field's type refers to (through Optional), or None."""
    if dataclasses.is_dataclass(tp):
        return tp
    for arg in typing.get_args(tp):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def check_keys(tree: dict, schema=None, prefix: str = "") -> None:
    """Raise ``ConfigError`` for a key of the composed config ``tree`` (plain dicts) that the schema
    does not have, also one added with ``+key=value``. Mappings typed ``dict`` in the schema
    (``claim.criteria``, …) are free."""
    schema = Config if schema is None else schema
    hints = typing.get_type_hints(schema)
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if key not in hints:
            allowed = ", ".join(f.name for f in dataclasses.fields(schema))
            raise ConfigError(f"{name}={value!r} is invalid: unknown key; allowed keys"
                              f"{f' of {prefix[:-1]}' if prefix else ''}: {allowed}")
        tp = hints[key]
        sub = _schema_of(tp)
        if sub is not None and isinstance(value, dict) and not _free_mapping(tp):
            check_keys(value, sub, f"{name}.")


PROBE_CHOICES = {"method": ("lanczos", "power", "lobpcg"), "where": ("iterate", "midpoint"),
                 "convention": ("locuslab", "init2winit"), "operator": ("ggn", "empirical_fisher")}
TRACE_CHOICES = {**PROBE_CHOICES, "method": ("hutchinson", "hutchpp")}


def _validate_probe(name: str, probe, chunk: int) -> None:
    key = f"probes.{name}"
    check(probe.every >= 0 and probe.every % chunk == 0, f"{key}.every", probe.every,
          f"0 (off) or a positive multiple of train.chunk={chunk}")
    for option, allowed in (TRACE_CHOICES if name == "trace" else PROBE_CHOICES).items():
        if hasattr(probe, option):
            value = getattr(probe, option)
            check(value in allowed, f"{key}.{option}", value, " | ".join(allowed))
    for option in ("tol", "max_iters", "k", "num_samples", "n_examples", "num_batches", "batch_size",
                   "chunk"):
        value = getattr(probe, option, None)
        check(value is None or value > 0, f"{key}.{option}", value, "a number > 0")
    if getattr(probe, "loss", None) is not None:
        from dynamics.losses import LOSSES

        LOSSES.get(probe.loss)


def _validate_tracking(name: str, probe, optimizer: str) -> None:
    """``probes.<name>.track_fraction``: a fraction > 0, ``k_max >= k``, a threshold to grow against."""
    if getattr(probe, "track_fraction", None) is None or probe.every == 0:
        return
    from dynamics.probes.tracking import check_threshold

    key = f"probes.{name}"
    check(probe.track_fraction > 0, f"{key}.track_fraction", probe.track_fraction,
          "null (k fixed) or a fraction > 0")
    check(probe.k_max >= probe.k, f"{key}.k_max", probe.k_max, f"an integer >= {key}.k={probe.k}")
    check(probe.threshold is None or probe.threshold > 0, f"{key}.threshold", probe.threshold,
          "null (the optimizer's threshold) or a number > 0")
    check_threshold(name, optimizer, probe.threshold)


__all__ = ["check_keys", "estimate_memory", "validate"]
