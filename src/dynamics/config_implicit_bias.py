"""Config schema of the implicit-bias tasks (``implicit_bias.*``), beside the main schema.

Tasks (``dynamics.tasks.implicit_bias``) and the fields each reads; the step size is ``optimizer.lr`` and
the step count ``train.steps`` everywhere (metrics rows at ``train.log_every``):

- ``label_noise``: d, n, sparsity, alpha, model, depth, label_noise_std, batch_size, clean_fraction, gd_lr,
  num_seeds;
- ``label_noise_flow``: d, n, sparsity, alpha, model, depth, label_noise_std, batch_size, num_runs,
  flow_dt, flow_constant, control_constant, check_fractions, phi_steps;
- ``mirror_descent``: d, n, alpha, uv_init, power_alpha, lr_halvings, matrix_dim, num_measurements,
  control_alpha, control_lr;
- ``kernel_rich``: d, n, sparsity, alphas, lr_scale, tol;
- ``margin``: d, n (base points; mirrored to 2n), width, leak, init_scale, contrast_init_scale, num_seeds.
"""

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class ImplicitBiasConfig:
    """``implicit_bias.*``: options of the implicit-bias experiments (diagonal models, flows, margin)."""

    d: int = 100  # dimension of the sparse regression problem (margin: input dimension)
    n: int = 40  # number of samples (margin: base points before mirroring)
    sparsity: int = 5  # kappa: nonzeros of w* (= 1 each)
    alpha: float = 1.0  # initialization scale u = v = alpha
    model: str = "uu_minus_vv"  # diagonal model: uu_minus_vv | uv | power
    depth: int = 2  # D of the power model u^D - v^D
    label_noise_std: float = 3.0  # sigma of the fresh label noise; c = sigma^2 / B
    batch_size: Optional[int] = None  # label-noise batch B (null: full batch)
    clean_fraction: float = 0.5  # label_noise: last fraction of train.steps run with sigma = 0
    gd_lr: float = 0.01  # label_noise: step of the plain-GD baseline (run for the noisy-phase steps)
    num_seeds: int = 5  # label_noise / margin: seeds seed, ..., seed + num_seeds - 1 in one run
    num_runs: int = 4  # label_noise_flow: label-noise runs averaged
    flow_dt: float = 2.0e-3  # label_noise_flow: largest Euler step of the limiting flow (time units)
    flow_constant: float = 0.25  # the limit's constant: dw/dt = -constant * c * P_T grad tr(H)
    control_constant: float = 0.5  # a wrong constant that the comparison must reject
    check_fractions: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0])  # of train.steps
    phi_steps: int = 20000  # GD steps (at optimizer.lr) approximating the gradient-flow limit Phi
    uv_init: list[float] = field(default_factory=lambda: [0.5, 0.2])  # mirror_descent: (u0, v0) of u*v
    power_alpha: float = 0.5  # mirror_descent: init of u^3 - v^3
    lr_halvings: int = 2  # mirror_descent: also run lr/2, ..., lr/2^k (steps doubled)
    matrix_dim: int = 5  # mirror_descent control: X = U U^T of this size
    num_measurements: int = 6
    control_alpha: float = 0.3  # U0 = control_alpha * I
    control_lr: float = 1.0e-2  # the control runs train.steps steps at control_lr (and its halvings)
    alphas: list[float] = field(default_factory=lambda: [0.01, 0.1, 0.3, 1.0])  # kernel_rich
    lr_scale: float = 0.01  # kernel_rich: lr(alpha) = min(optimizer.lr, lr_scale / alpha^2)
    tol: float = 1.0e-9  # kernel_rich: GD stops when ||Zx - y|| < tol
    width: int = 50  # margin: hidden neurons
    leak: float = 0.1  # margin: Leaky-ReLU slope alpha_leak
    init_scale: float = 1.0e-3  # margin: w_k, a_k ~ init_scale * N(0, 1)
    contrast_init_scale: float = 1.0  # margin: the large-init contrast
