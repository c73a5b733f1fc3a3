"""Typed config schemas: plain dataclasses, no Hydra (``dynamics.run`` registers ``Config`` in Hydra's
ConfigStore as ``schema``; ``dynamics.validation`` checks values).

Hydra composes ``conf/config.yaml`` onto the ``schema`` node, so an unknown key (``optimizer.lrr``) or a
value of the wrong type (``optimizer.lr=abc``) fails at compose time naming the key.
"""

from dataclasses import dataclass, field
from typing import Any, Optional

from dynamics.config_central import CentralFlowConfig
from dynamics.config_implicit_bias import ImplicitBiasConfig
from dynamics.config_logger import LoggerConfig
from dynamics.config_ntk import NTKConfig
from dynamics.config_sde import SDEConfig


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
    target: Optional[str] = None  # model.name=target: '<module>:<callable>' returning your model
    kwargs: dict = field(default_factory=dict)  # model.name=target: the callable's arguments


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
    # further arguments under their optax names (optimizer.args.b1=0.95, optimizer.args.nesterov=true);
    # numeric ones are traced. The only way to set an optax alias's own arguments (optimizer.name=lion).
    args: dict = field(default_factory=dict)
    # optimizer.name=target: '<module>:<callable>' returning an optax GradientTransformation, called
    # with optimizer.kwargs (numeric ones traced) and learning_rate=optimizer.lr if it takes one
    target: Optional[str] = None
    kwargs: dict = field(default_factory=dict)


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
    # grow the tracked block by itself (dynamics.probes.tracking): while the smallest tracked
    # eigenvalue is >= track_fraction * threshold, up to k_max (null: k fixed; 0.75: the central
    # flows' 1.5/η)
    track_fraction: Optional[float] = None
    k_max: int = 8
    threshold: Optional[float] = None  # null: the optimizer's threshold from the table


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
class BatchSharpnessProbeConfig:
    """``probes.batch_sharpness.*``: E_B[g_BᵀH_Bg_B/‖g_B‖²] over ``num_batches`` minibatches, with its
    standard error (``batch_sharpness``, ``batch_sharpness_se``)."""

    every: int = 0
    num_batches: int = 64
    batch_size: Optional[int] = None  # None: the training batch size (train.batch_size)
    chunk: Optional[int] = None  # batches processed together (None: all at once)


@dataclass
class EvalProbeConfig:
    """``probes.eval.*``: test loss/accuracy every ``every`` steps (0: off)."""

    every: int = 0
    train: bool = False  # also the loss/accuracy on the whole training set (full_train_*)


@dataclass
class GGNSharpnessProbeConfig(SharpnessProbeConfig):
    """``probes.ggn_sharpness.*``: top-k eigenvalues of the Gauss-Newton matrix JᵀH_ℓJ (or, with
    ``operator: empirical_fisher``, of the empirical Fisher) every ``every`` steps (0: off)."""

    operator: str = "ggn"  # ggn | empirical_fisher


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
    batch_sharpness: BatchSharpnessProbeConfig = field(default_factory=BatchSharpnessProbeConfig)
    ggn_sharpness: GGNSharpnessProbeConfig = field(default_factory=GGNSharpnessProbeConfig)
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
    args: dict = field(default_factory=dict)  # optimizer.args.<name> lists: vmap.args.b1=[0.8,0.9]


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
    of its pass criteria. With ``seeds = n`` the run judges seeds ``seed, seed+1, …, seed+n−1``; by
    ``rule = pass_fraction`` it passes when at least ``ceil(min_pass_fraction·n)`` of them pass (a
    diverged or failed seed does not), by ``rule = mean`` when every check's mean over the complete seeds
    meets its bound and at most ``n − ceil(min_pass_fraction·n)`` seeds were dropped
    (``dynamics.claims.seeds``)."""

    name: str = "none"
    seeds: int = 1
    min_pass_fraction: float = 0.8
    rule: str = "pass_fraction"  # pass_fraction | mean
    criteria: dict[str, Any] = field(default_factory=dict)


@dataclass
class EosOptimizersConfig:
    """``eos_optimizers.*`` (task ``eos_optimizers``): claim ``eos`` for each entry of ``runs``, label →
    ``{optimizer: {optimizer.* keys}, probe: {probe options}, criteria: {claim.criteria}}``, with its
    curvature probe every ``every`` steps."""

    runs: dict = field(default_factory=dict)
    every: int = 10
    only: Optional[list[str]] = None  # run these labels of runs only (null: all)


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
    eos_optimizers: EosOptimizersConfig = field(default_factory=EosOptimizersConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)  # wandb, tensorboard, mlflow


__all__ = ["ClaimConfig", "Config", "OptimizerConfig", "VmapConfig"]
