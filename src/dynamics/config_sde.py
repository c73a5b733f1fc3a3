"""Config schema of the SDE family (``sde.*``): one typed node per task, beside the main schema.

- ``sde.quadratic.*``: task ``sde_quadratic`` (noisy quadratic models, no data set);
- ``sde.svag.*``: task ``svag`` (the SVAG ladder ℓ = 1, 2, 4, 8 of the train task, in one process);
- ``sde.sqrt_scaling.*``: task ``sqrt_scaling`` (rule × κ sweeps of the train task, in one process).

The sweep tasks take the base run from the ordinary keys (``model``, ``data``, ``train``, ``optimizer``:
``optimizer.*`` is the first optimizer of the sweep, with its real step size) and add the optimizers in
``others`` (name -> hyperparameters over the schema's defaults).
"""

from dataclasses import dataclass, field
from typing import Any, Optional

from dynamics.errors import check

SVAG_METRICS = ("train_loss", "test_accuracy", "test_loss")
RULES = ("sqrt", "linear")


@dataclass
class QuadraticConfig:
    """``sde.quadratic.*``: options of the ``sde_quadratic`` task (noisy quadratic models).

    Part 1 (SGD) runs ``train.steps`` steps at η = ``optimizer.lr`` and at η/2 (twice the steps) on
    f = ½(θ₁² + ¼θ₂²) with gradient-noise variances (1, 4)·``noise_std``², θ₀ = (2, −2).
    Part 2 (RMSprop/Adam) runs the same problem in the SDE scaling of Malladi et al. (2022) at
    η = ``adaptive_lr`` and η/2 with σ₀, ε₀, c₁, c₂ fixed, to SDE time ``adaptive_time``.
    Part 3 (scaling rules) runs the d-dimensional NQM of papers/sde.md §8.4.
    """

    num_paths: int = 20000  # Monte Carlo paths of parts 1 and 2 (vmapped)
    noise_std: float = 1.0  # part 1/2: scale of the gradient-noise std (variances (1, 4)·noise_std²)
    sde_substeps: int = 4  # Euler–Maruyama steps per optimizer step of the finest η (reference SDE)
    adaptive_lr: float = 0.5  # part 2: base η of the RMSprop/Adam ladder (η and η/2)
    adaptive_time: float = 3.0  # part 2: SDE time T = k·η²
    sigma0: float = 1.0  # part 2: σ0 = σ·η
    eps0: float = 0.1  # part 2: ε0 = ε·η
    c1: float = 2.0  # part 2: c1 = (1 − β1)/η² (Adam)
    c2: float = 1.0  # part 2: c2 = (1 − β2)/η²
    dim: int = 10  # part 3: NQM dimension, h = logspace(0, log10(h_min), dim)
    h_min: float = 0.1  # part 3: smallest curvature
    scaling_noise_std: float = 100.0  # part 3: per-sample gradient-noise std σ1 (covariance σ1²·H)
    control_noise_std: float = 1.0  # part 3: low-noise control (the √ rule must fail there)
    control_theta0: float = 3.0  # part 3: initial θ of the low-noise control (θ0 = 1 otherwise)
    base_batch: int = 512  # part 3: base batch B0
    base_lr: float = 0.1  # part 3: base η of RMSprop/Adam at B0 (SGD: base_lr · sgd_lr_factor)
    sgd_lr_factor: float = 1.0  # part 3: SGD base η = base_lr · sgd_lr_factor (ηh ≤ 0.1: SDE regime)
    b1: float = 0.9  # part 3: Adam β1 at B0
    b2: float = 0.999  # part 3: β2 at B0
    eps: float = 1e-8  # part 3: ε at B0 (outside the square root)
    scaling_steps: int = 400  # part 3: steps at B0 (κ·B0 runs 1/κ times as many)
    scaling_paths: int = 2000  # part 3: Monte Carlo paths
    kappas: list[float] = field(default_factory=lambda: [0.25, 0.0625])  # part 3: batch multipliers

    def __post_init__(self):
        check(self.num_paths >= 100, "sde.quadratic.num_paths", self.num_paths, "an integer >= 100")
        check(self.sde_substeps >= 1, "sde.quadratic.sde_substeps", self.sde_substeps,
              "an integer >= 1")
        check(self.scaling_steps > 0 and self.scaling_steps % 20 == 0, "sde.quadratic.scaling_steps",
              self.scaling_steps, "a positive multiple of 20")
        check(self.scaling_paths >= 2, "sde.quadratic.scaling_paths", self.scaling_paths,
              "an integer >= 2")
        check(all(0 < k < 1 for k in self.kappas), "sde.quadratic.kappas", self.kappas,
              "floats in (0, 1)")


@dataclass
class SVAGConfig:
    """``sde.svag.*``: the SVAG ladder (task ``svag``).

    Each optimizer (``optimizer.*``, then ``others``) runs at every ℓ of ``ls`` with ``oracle.name=svag``,
    one vmapped program over the claim's seeds ``seed, …, seed + seeds − 1`` per (optimizer, ℓ), into
    ``<run>/points/<optimizer>_l<ℓ>/``. ``noise: false`` cuts the data set to one batch drawn
    without replacement, so both SVAG batches are the whole training set and g = ∇L exactly (measured, not
    a negative control of the train-loss ladder: experiments/svag/README.md).
    """

    ls: list[float] = field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0])  # the ladder: 1, 2, 4, …
    seeds: int = 192  # seeds per (optimizer, ℓ), vmapped; seed i is the same init at every ℓ
    others: Optional[dict[str, Any]] = field(default_factory=lambda: {"gd": {"lr": 1.0}})  # null: none
    metric: str = "train_loss"  # the pre-declared primary metric: train_loss | test_loss | test_accuracy
    windows: int = 10  # train loss: batch losses averaged in this many equal windows of continuous time
    noise: bool = True  # false: no gradient noise (one batch = the whole training set)

    def __post_init__(self):
        ls = [float(v) for v in self.ls]
        check(len(ls) >= 2 and ls[0] == 1.0 and all(b == 2 * a for a, b in zip(ls, ls[1:])),
              "sde.svag.ls", self.ls, "a doubling ladder from 1 (e.g. [1, 2, 4, 8])")
        check(self.seeds >= 3, "sde.svag.seeds", self.seeds, "an integer >= 3 (a jackknife over seeds)")
        check(self.metric in SVAG_METRICS, "sde.svag.metric", self.metric, " | ".join(SVAG_METRICS))
        check(self.windows >= 1, "sde.svag.windows", self.windows, "an integer >= 1")


@dataclass
class SqrtScalingConfig:
    """``sde.sqrt_scaling.*``: the batch-size scaling rules (task ``sqrt_scaling``).

    Each optimizer (``optimizer.*``, then ``others``) runs at κ = 1 (the base) and at every κ of
    ``kappas`` under every rule of ``rules`` (batch κ·B0, steps/κ), one vmapped program over the claim's
    seeds per point, into ``<run>/points/<optimizer>_<rule>_k<κ>/``. ``adaptive_rule`` is the rule claimed
    to hold for RMSprop/Adam (SGD: ``sgd_rule``); the other rule is the control that must depart.
    """

    kappas: list[float] = field(default_factory=lambda: [0.25, 0.0625])
    rules: list[str] = field(default_factory=lambda: ["sqrt", "linear"])
    seeds: int = 8
    others: Optional[dict[str, Any]] = field(default_factory=lambda: {  # null: none
        "rmsprop": {"lr": 0.002, "b2": 0.999, "bias_correction": True}, "gd": {"lr": 0.2}})
    adaptive_rule: str = "sqrt"  # the rule claimed for RMSprop/Adam (linear: the control that fails)
    sgd_rule: str = "linear"  # the rule claimed for SGD
    windows: int = 12  # train loss: batch losses averaged in this many windows of samples seen

    def __post_init__(self):
        check(len(self.kappas) > 0 and all(0 < k < 1 for k in self.kappas),
              "sde.sqrt_scaling.kappas", self.kappas, "floats in (0, 1)")
        for key in ("adaptive_rule", "sgd_rule"):
            check(getattr(self, key) in RULES, f"sde.sqrt_scaling.{key}", getattr(self, key),
                  " | ".join(RULES))
        check(all(r in RULES for r in self.rules), "sde.sqrt_scaling.rules", self.rules,
              f"rules among {', '.join(RULES)}")
        check(self.seeds >= 2, "sde.sqrt_scaling.seeds", self.seeds, "an integer >= 2")
        check(self.windows >= 4, "sde.sqrt_scaling.windows", self.windows, "an integer >= 4")


@dataclass
class SDEConfig:
    """``sde.*``: one node per task of the SDE family."""

    quadratic: QuadraticConfig = field(default_factory=QuadraticConfig)
    svag: SVAGConfig = field(default_factory=SVAGConfig)
    sqrt_scaling: SqrtScalingConfig = field(default_factory=SqrtScalingConfig)
