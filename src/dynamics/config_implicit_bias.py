"""Config schema of the implicit-bias tasks (``implicit_bias.*``), beside the main schema."""

from dataclasses import dataclass


@dataclass
class ImplicitBiasConfig:
    """``implicit_bias.*``: options of the implicit-bias experiments (diagonal models, flows, margin)."""

    d: int = 100  # dimension of the sparse regression problem
    n: int = 40  # number of samples
    sparsity: int = 5  # kappa: nonzeros of w*
    alpha: float = 1.0  # initialization scale
