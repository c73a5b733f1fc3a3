"""Config schema of the SDE tasks (``sde.*``), beside the main schema."""

from dataclasses import dataclass


@dataclass
class SDEConfig:
    """``sde.*``: options of the SDE experiments on noisy quadratic models."""

    dim: int = 10  # dimension of the noisy quadratic
    num_paths: int = 1000  # sample paths (vmapped)
    noise_std: float = 1.0  # gradient-noise standard deviation
