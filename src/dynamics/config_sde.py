"""Config schema of the SDE tasks (``sde.*``), beside the main schema."""

from dataclasses import dataclass, field


@dataclass
class SDEConfig:
    """``sde.*``: options of the ``sde_quadratic`` task (noisy quadratic models).

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
