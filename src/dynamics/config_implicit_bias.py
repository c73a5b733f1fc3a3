"""Config schema of the implicit-bias tasks (``implicit_bias.<task>.*``), beside the main schema.

One typed node per task (``dynamics.tasks.label_noise``, ``label_noise_flow``, ``mirror_descent``,
``kernel_rich``, ``margin``). Generic keys keep their meaning everywhere: the step size is
``optimizer.lr``, the step count ``train.steps`` (metrics rows at ``train.log_every``), and ``seed`` the
first of the claim's seeds. Each node checks its own values when the config is built (``__post_init__``
raises ``ConfigError`` naming the key), so a bad value fails before any run directory exists.
"""

from dataclasses import dataclass, field
from typing import Optional

from dynamics.errors import check

MODEL_KINDS = ("uu_minus_vv", "uv", "power")  # dynamics.flows.KINDS (not imported: no config -> flows edge)


def _check_regression(key: str, d: int, n: int, sparsity: int, alpha: float) -> None:
    check(d >= 1, f"{key}.d", d, "an integer >= 1")
    check(n >= 1, f"{key}.n", n, "an integer >= 1")
    check(1 <= sparsity <= d, f"{key}.sparsity", sparsity, f"an integer in [1, d={d}]")
    check(alpha > 0, f"{key}.alpha", alpha, "a float > 0")


def _check_noise(key: str, node) -> None:
    check(node.model in MODEL_KINDS, f"{key}.model", node.model, " | ".join(MODEL_KINDS))
    check(node.depth >= 2, f"{key}.depth", node.depth, "an integer >= 2")
    check(node.label_noise_std >= 0, f"{key}.label_noise_std", node.label_noise_std, "a float >= 0")
    check(node.batch_size is None or 1 <= node.batch_size <= node.n, f"{key}.batch_size", node.batch_size,
          f"null (full batch) or an integer in [1, n={node.n}]")


@dataclass
class LabelNoiseConfig:
    """``implicit_bias.label_noise.*``: label-noise GD, then clean GD, vs plain GD on a sparse regression
    x = G(w), w* = 1 on ``sparsity`` coordinates, init u = v = ``alpha``; seeds seed, …, seed+num_seeds−1
    vmapped in one run."""

    d: int = 100
    n: int = 40
    sparsity: int = 5
    alpha: float = 1.0
    model: str = "uu_minus_vv"  # uu_minus_vv | uv | power
    depth: int = 2  # D of the power model u^D - v^D
    label_noise_std: float = 3.0  # sigma of the fresh label noise; c = sigma^2 / B (0: the control)
    batch_size: Optional[int] = None  # label-noise batch B (null: full batch)
    clean_fraction: float = 0.5  # last fraction of train.steps run with sigma = 0
    gd_lr: float = 0.01  # step of the plain-GD baseline (run for the noisy-phase steps)
    num_seeds: int = 5

    def __post_init__(self):
        key = "implicit_bias.label_noise"
        _check_regression(key, self.d, self.n, self.sparsity, self.alpha)
        _check_noise(key, self)
        check(0 <= self.clean_fraction < 1, f"{key}.clean_fraction", self.clean_fraction, "a float in [0, 1)")
        check(self.gd_lr > 0, f"{key}.gd_lr", self.gd_lr, "a float > 0")
        check(self.num_seeds >= 1, f"{key}.num_seeds", self.num_seeds, "an integer >= 1")


@dataclass
class LabelNoiseFlowConfig:
    """``implicit_bias.label_noise_flow.*``: the mean of ``num_runs`` label-noise runs vs the limiting flow
    dw/dt = −flow_constant·c·P_T∇tr∇²L (c = σ²/B, t = η²·step) from Φ(w₀); one seed per run (``claim.seeds``)."""

    d: int = 20
    n: int = 8
    sparsity: int = 2
    alpha: float = 1.0
    model: str = "uu_minus_vv"
    depth: int = 2
    label_noise_std: float = 1.0
    batch_size: Optional[int] = None
    num_runs: int = 16  # label-noise runs averaged (vmapped)
    flow_dt: float = 2.0e-3  # largest Euler step of the limiting flow (time units)
    flow_constant: float = 0.25  # the limit's constant (theory: 1/4; 0.5 is the control)
    discrimination_constant: float = 0.5  # a wrong constant the comparison must reject in the same run
    # in the flow's own time c·t (t = η²·step; dw/dt depends on c·t only): 1.25, 2.5, 5 = t 10, 20, 40 at c = 1/8
    check_flow_times: list[float] = field(default_factory=lambda: [1.25, 2.5, 5.0])
    phi_lr: float = 0.01  # GD step of the gradient-flow limit Φ (not optimizer.lr: Φ is a flow limit)
    phi_steps: int = 20000

    def __post_init__(self):
        key = "implicit_bias.label_noise_flow"
        _check_regression(key, self.d, self.n, self.sparsity, self.alpha)
        _check_noise(key, self)
        check(self.num_runs >= 2, f"{key}.num_runs", self.num_runs, "an integer >= 2 (the SE needs two)")
        check(self.flow_dt > 0, f"{key}.flow_dt", self.flow_dt, "a float > 0")
        check(self.flow_constant > 0, f"{key}.flow_constant", self.flow_constant, "a float > 0")
        check(self.discrimination_constant > 0, f"{key}.discrimination_constant", self.discrimination_constant,
              "a float > 0")
        check(len(self.check_flow_times) >= 1 and all(t > 0 for t in self.check_flow_times),
              f"{key}.check_flow_times", self.check_flow_times, "a non-empty list of flow times c·t > 0")
        check(self.phi_lr > 0, f"{key}.phi_lr", self.phi_lr, "a float > 0")
        check(self.phi_steps >= 0, f"{key}.phi_steps", self.phi_steps, "an integer >= 0")


@dataclass
class MirrorDescentConfig:
    """``implicit_bias.mirror_descent.*``: GD in w vs dual mirror descent in x for the diagonal models
    (η = optimizer.lr and its halvings, train.steps steps at η) and X = UUᵀ matrix sensing on its own η
    ladder (``matrix_lr`` and its halvings, T = ``matrix_time``)."""

    d: int = 30
    n: int = 10
    alpha: float = 0.3  # u⊙u − v⊙v init
    uv_init: list[float] = field(default_factory=lambda: [0.5, 0.2])  # (u0, v0) of u⊙v
    power_alpha: float = 0.5  # init of u³ − v³
    lr_halvings: int = 2  # also run lr/2, ..., lr/2^k (steps doubled)
    matrix_dim: int = 5
    num_measurements: int = 6
    matrix_alpha: float = 0.3  # U0 = matrix_alpha * I
    matrix_lr: float = 4.0e-3  # largest η of the matrix ladder (the O(η) regime; 1e-2 is outside it)
    matrix_time: float = 5.0  # T of the matrix runs (steps = T / η)
    matrix_log_every: int = 1  # gap sampled every this many steps of the largest η (a transient peaks early)
    matrix_commuting: bool = True  # false: generic measurements (the non-commuting control)

    def __post_init__(self):
        key = "implicit_bias.mirror_descent"
        check(self.d >= 1 and self.n >= 1, f"{key}.d", self.d, "d >= 1 and n >= 1")
        check(self.alpha > 0, f"{key}.alpha", self.alpha, "a float > 0")
        check(len(self.uv_init) == 2 and min(self.uv_init) > 0, f"{key}.uv_init", self.uv_init,
              "[u0, v0] with u0, v0 > 0")
        check(self.power_alpha > 0, f"{key}.power_alpha", self.power_alpha, "a float > 0")
        check(self.lr_halvings >= 1, f"{key}.lr_halvings", self.lr_halvings, "an integer >= 1")
        check(self.matrix_dim >= 2, f"{key}.matrix_dim", self.matrix_dim, "an integer >= 2")
        check(self.num_measurements >= 1, f"{key}.num_measurements", self.num_measurements, "an integer >= 1")
        check(self.matrix_alpha > 0, f"{key}.matrix_alpha", self.matrix_alpha, "a float > 0")
        check(self.matrix_lr > 0, f"{key}.matrix_lr", self.matrix_lr, "a float > 0")
        check(self.matrix_time > 0, f"{key}.matrix_time", self.matrix_time, "a float > 0")
        check(self.matrix_log_every >= 1, f"{key}.matrix_log_every", self.matrix_log_every, "an integer >= 1")


@dataclass
class KernelRichConfig:
    """``implicit_bias.kernel_rich.*``: GD on u⊙u − v⊙v from u = v = α for each α vs argmin Q_α."""

    d: int = 100
    n: int = 40
    sparsity: int = 5
    alphas: list[float] = field(default_factory=lambda: [0.01, 0.1, 0.3, 1.0])
    lr_scale: float = 0.01  # lr(alpha) = min(optimizer.lr, lr_scale / alpha^2)
    tol: float = 1.0e-9  # GD stops when ||Zx - y|| < tol

    def __post_init__(self):
        key = "implicit_bias.kernel_rich"
        _check_regression(key, self.d, self.n, self.sparsity, 1.0)
        check(len(self.alphas) >= 1 and all(a > 0 for a in self.alphas), f"{key}.alphas", self.alphas,
              "a non-empty list of floats > 0")
        check(self.lr_scale > 0, f"{key}.lr_scale", self.lr_scale, "a float > 0")
        check(self.tol >= 0, f"{key}.tol", self.tol, "a float >= 0")


@dataclass
class MarginConfig:
    """``implicit_bias.margin.*``: GD on a two-layer Leaky-ReLU net (no biases) on symmetric separable data
    (n base points and their mirrors in ℝ^d), from ``init_scale`` and from ``contrast_init_scale``."""

    d: int = 10
    n: int = 20  # base points; mirrored to 2n
    width: int = 50
    leak: float = 0.1  # Leaky-ReLU slope alpha_leak
    init_scale: float = 1.0e-3  # w_k, a_k ~ init_scale * N(0, 1) (1.0: the control)
    contrast_init_scale: float = 1.0  # the large-init contrast run in the same run
    num_seeds: int = 5

    def __post_init__(self):
        key = "implicit_bias.margin"
        check(self.d >= 1 and self.n >= 1, f"{key}.n", self.n, "d >= 1 and n >= 1")
        check(self.width >= 1, f"{key}.width", self.width, "an integer >= 1")
        check(0 < self.leak < 1, f"{key}.leak", self.leak, "a float in (0, 1)")
        check(self.init_scale > 0, f"{key}.init_scale", self.init_scale, "a float > 0")
        check(self.contrast_init_scale > 0, f"{key}.contrast_init_scale", self.contrast_init_scale, "a float > 0")
        check(self.num_seeds >= 1, f"{key}.num_seeds", self.num_seeds, "an integer >= 1")


@dataclass
class ImplicitBiasConfig:
    """``implicit_bias.*``: one node per implicit-bias task."""

    label_noise: LabelNoiseConfig = field(default_factory=LabelNoiseConfig)
    label_noise_flow: LabelNoiseFlowConfig = field(default_factory=LabelNoiseFlowConfig)
    mirror_descent: MirrorDescentConfig = field(default_factory=MirrorDescentConfig)
    kernel_rich: KernelRichConfig = field(default_factory=KernelRichConfig)
    margin: MarginConfig = field(default_factory=MarginConfig)
