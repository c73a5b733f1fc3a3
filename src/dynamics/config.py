"""Typed config schemas (dataclasses registered in Hydra's ConfigStore) and value checks.

Hydra composes ``conf/config.yaml`` onto the ``schema`` node, so an unknown key (``optimizer.lrr``) or a
value of the wrong type (``optimizer.lr=abc``) fails at compose time naming the key. ``validate`` then
checks values (ranges, registered names) before anything is built or compiled; it raises ``ConfigError``
with one line naming the key and the allowed values.
"""

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore

from dynamics.config_central import CentralFlowConfig
from dynamics.config_implicit_bias import ImplicitBiasConfig
from dynamics.config_ntk import NTKConfig
from dynamics.config_sde import SDEConfig
from dynamics.errors import ConfigError, check


@dataclass
class ModelConfig:
    """``model.*``: the architecture. Fields a model does not use are ignored by it."""

    name: str = "mlp"
    widths: list[int] = field(default_factory=lambda: [64, 64])  # mlp hidden widths
    channels: list[int] = field(default_factory=lambda: [32, 32])  # cnn conv channels
    kernel_size: int = 3  # cnn
    activation: str = "tanh"
    init: str = "torch"  # torch | lecun | he | xavier
    use_bias: bool = True
    output_scale: float = 1.0  # scale_invariant_mlp: fixed multiplier of the normalized logits


@dataclass
class DataConfig:
    """``data.*``: the data set. ``n_train``/``n_test`` take the first examples (deterministic)."""

    name: str = "synthetic"
    n_train: Optional[int] = 1000
    n_test: Optional[int] = 1000
    dim: int = 32  # synthetic / teacher input dimension
    num_classes: int = 4  # synthetic
    teacher_width: int = 64  # synthetic / teacher
    out_dim: int = 1  # teacher (regression outputs)
    noise: float = 0.0  # teacher label noise std
    classes: Optional[list[int]] = None  # mnist1d: keep these classes, relabelled 0..k-1
    path: Optional[str] = None  # cifar10: folder with the python batches
    seed: Optional[int] = None  # the data stream's seed (null: the run's ``seed``); fixes the data across seeds


@dataclass
class OptimizerConfig:
    """``optimizer.*``: name and hyperparameters (each optimizer reads the ones it uses)."""

    name: str = "gd"
    lr: float = 0.1
    momentum: float = 0.9
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    bias_correction: bool = False  # rmsprop: ν/(1 − β2^t), as PyTorch's Adam with β1 = 0 (SVAG paper's code)


@dataclass
class SharpnessProbeConfig:
    """``probes.sharpness.*``: top-k Hessian eigenvalues every ``every`` steps (0: off)."""

    every: int = 0
    n_examples: Optional[int] = None  # first n training examples; None: all
    tol: float = 1e-3  # relative residual tolerance: ‖Hv − λv‖ ≤ tol·|λ_max|
    max_iters: int = 100  # Hessian-vector products per measurement, at most
    method: str = "lanczos"  # lanczos | power | lobpcg
    k: int = 1
    where: str = "iterate"  # iterate | midpoint (of θ_t and θ_{t+1})
    loss: Optional[str] = None  # None: the training loss; or a registered loss, e.g. mse


@dataclass
class LossSharpnessProbeConfig(SharpnessProbeConfig):
    """``probes.loss_sharpness.*``: sharpness of another loss than the one trained (default MSE)."""

    loss: Optional[str] = "mse"


@dataclass
class PrecondSharpnessProbeConfig(SharpnessProbeConfig):
    """``probes.precond_sharpness.*``: λ_max(P⁻¹H) for Adam/RMSprop's diagonal preconditioner P."""

    convention: str = "locuslab"  # locuslab: P = (1−β1^t)(√ν̂+ε) | init2winit: P = √ν̂+ε


@dataclass
class SphericalSharpnessProbeConfig:
    """``probes.spherical_sharpness.*``: λ_max(∇²L(θ/‖θ‖)), ‖θ‖ and η_eff = η/‖θ‖²."""

    every: int = 0
    n_examples: Optional[int] = None
    tol: float = 1e-3
    max_iters: int = 100
    method: str = "lanczos"
    where: str = "iterate"


@dataclass
class TraceProbeConfig:
    """``probes.trace.*``: Hutchinson / Hutch++ estimate of tr ∇²L with its standard error."""

    every: int = 0
    n_examples: Optional[int] = None
    num_samples: int = 20
    method: str = "hutchpp"  # hutchinson | hutchpp
    where: str = "iterate"


@dataclass
class EvalProbeConfig:
    """``probes.eval.*``: test loss/accuracy every ``every`` steps (0: off)."""

    every: int = 0
    train: bool = False  # also the loss/accuracy on the whole training set (full_train_*)


@dataclass
class ProbesConfig:
    """One section per registered probe; a probe runs when its ``every`` is positive."""

    sharpness: SharpnessProbeConfig = field(default_factory=SharpnessProbeConfig)
    loss_sharpness: LossSharpnessProbeConfig = field(default_factory=LossSharpnessProbeConfig)
    precond_sharpness: PrecondSharpnessProbeConfig = field(
        default_factory=PrecondSharpnessProbeConfig)
    spherical_sharpness: SphericalSharpnessProbeConfig = field(
        default_factory=SphericalSharpnessProbeConfig)
    trace: TraceProbeConfig = field(default_factory=TraceProbeConfig)
    eval: EvalProbeConfig = field(default_factory=EvalProbeConfig)


@dataclass
class TrainConfig:
    """``train.*``: the loop. ``batch_size: null`` is full-batch gradient descent."""

    steps: int = 1000
    chunk: int = 10  # steps per compiled call (lax.scan); probes run at chunk boundaries
    batch_size: Optional[int] = None
    log_every: int = 1
    loss: str = "mse"  # mse (½‖f−y‖², mean over examples) | cross_entropy
    sampling: str = "without_replacement"  # minibatch draws: without_replacement | with_replacement


@dataclass
class OracleConfig:
    """``oracle.*``: how each step estimates the gradient (``dynamics.train.oracles``)."""

    name: str = "batch"  # batch | label_noise | svag
    label_noise_std: float = 0.0  # label_noise: sigma of the fresh Gaussian noise on the targets
    svag_l: float = 1.0  # svag: noise amplification l >= 1 (lr, betas, eps and steps are rescaled)


@dataclass
class ScalingConfig:
    """``scaling.*``: run a base config (written at batch B0) at batch kappa*B0 under a scaling rule."""

    rule: str = "none"  # none | sqrt (Adam/RMSprop) | linear (SGD)
    kappa: float = 1.0


@dataclass
class VmapConfig:
    """``vmap.*``: sweep these values inside one compiled program (``jax.vmap``) instead of one process
    per point. The grid is the Cartesian product of the lists that are set; each point writes its own
    run directory ``points/<i>/`` with the same outputs as a normal run."""

    lr: Optional[list[float]] = None
    momentum: Optional[list[float]] = None
    b1: Optional[list[float]] = None
    b2: Optional[list[float]] = None
    eps: Optional[list[float]] = None
    weight_decay: Optional[list[float]] = None
    seed: Optional[list[int]] = None


@dataclass
class ParallelConfig:
    """``parallel.*``: data parallelism over the available devices (batch sharded, params replicated)."""

    data: bool = False


@dataclass
class CheckpointConfig:
    """``checkpoint.*``: save the training state every ``every`` steps (0: never)."""

    every: int = 0  # a multiple of train.chunk
    keep: int = 2  # newest checkpoints kept in <run dir>/checkpoints


@dataclass
class ClaimConfig:
    """``claim.*``: which claim the run checks (``dynamics.claims``), over how many seeds, and overrides
    of its pass criteria. With ``seeds = n`` the run judges seeds ``seed, seed+1, …, seed+n−1`` and passes
    when at least ``ceil(min_pass_fraction·n)`` of them pass (a diverged or failed seed does not)."""

    name: str = "none"
    seeds: int = 1
    min_pass_fraction: float = 0.8
    criteria: dict[str, Any] = field(default_factory=dict)


@dataclass
class Config:
    name: str = "default"
    task: str = "train"
    seed: int = 0
    precision: str = "float32"  # float32 | float64
    progress: Optional[bool] = None  # progress bar; None: only on a terminal
    resume: bool = False  # continue from the newest checkpoint in the run directory
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    probes: ProbesConfig = field(default_factory=ProbesConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    vmap: VmapConfig = field(default_factory=VmapConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    oracle: OracleConfig = field(default_factory=OracleConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    claim: ClaimConfig = field(default_factory=ClaimConfig)
    ntk: NTKConfig = field(default_factory=NTKConfig)
    implicit_bias: ImplicitBiasConfig = field(default_factory=ImplicitBiasConfig)
    sde: SDEConfig = field(default_factory=SDEConfig)
    central: CentralFlowConfig = field(default_factory=CentralFlowConfig)


PRECISIONS = ("float32", "float64")


def register_configs() -> None:
    """Store the schema as ``schema`` (named first in conf/config.yaml's defaults)."""
    ConfigStore.instance().store(name="schema", node=Config)


def validate(cfg: Config) -> None:
    """Check values before anything is built; raise ``ConfigError`` naming the key."""
    from dynamics.data import BATCH_SAMPLERS, DATASETS
    from dynamics.losses import LOSSES
    from dynamics.models.base import ACTIVATIONS, KERNEL_INITS, MODELS
    from dynamics.optim import OPTIMIZERS
    from dynamics.tasks import TASKS
    from dynamics.claims import check_criteria

    TASKS.get(cfg.task)
    MODELS.get(cfg.model.name)
    ACTIVATIONS.get(cfg.model.activation)
    KERNEL_INITS.get(cfg.model.init)
    DATASETS.get(cfg.data.name)
    OPTIMIZERS.get(cfg.optimizer.name)
    LOSSES.get(cfg.train.loss)
    BATCH_SAMPLERS.get(cfg.train.sampling)
    check_criteria(cfg.claim.name, cfg.claim.criteria)
    check(cfg.claim.seeds >= 1, "claim.seeds", cfg.claim.seeds, "an integer >= 1")
    check(0 < cfg.claim.min_pass_fraction <= 1, "claim.min_pass_fraction",
          cfg.claim.min_pass_fraction, "a float in (0, 1]")
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

    t = cfg.train
    check(t.steps > 0, "train.steps", t.steps, "an integer > 0")
    check(t.chunk > 0, "train.chunk", t.chunk, "an integer > 0")
    check(t.log_every > 0, "train.log_every", t.log_every, "an integer > 0")
    check(t.batch_size is None or t.batch_size > 0, "train.batch_size", t.batch_size,
          "null (full batch) or an integer > 0")
    swept = {k: v for k, v in dataclasses.asdict(cfg.vmap).items() if v is not None}
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
            try:
                _validate_optimizer(dataclasses.replace(o, **{name: value}))
            except ConfigError as err:
                allowed = str(err).split(" is invalid: allowed ", 1)[-1]
                raise ConfigError(f"vmap.{name}={values} is invalid: {value} is not allowed; "
                                  f"allowed {allowed} for each value") from None


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
                 "convention": ("locuslab", "init2winit")}
TRACE_CHOICES = {**PROBE_CHOICES, "method": ("hutchinson", "hutchpp")}


def _validate_probe(name: str, probe, chunk: int) -> None:
    key = f"probes.{name}"
    check(probe.every >= 0 and probe.every % chunk == 0, f"{key}.every", probe.every,
          f"0 (off) or a positive multiple of train.chunk={chunk}")
    for option, allowed in (TRACE_CHOICES if name == "trace" else PROBE_CHOICES).items():
        if hasattr(probe, option):
            value = getattr(probe, option)
            check(value in allowed, f"{key}.{option}", value, " | ".join(allowed))
    for option in ("tol", "max_iters", "k", "num_samples", "n_examples"):
        value = getattr(probe, option, None)
        check(value is None or value > 0, f"{key}.{option}", value, "a number > 0")
    if getattr(probe, "loss", None) is not None:
        from dynamics.losses import LOSSES

        LOSSES.get(probe.loss)


__all__ = ["Config", "ConfigError", "check_keys", "estimate_memory", "register_configs", "validate"]
