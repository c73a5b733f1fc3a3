"""Config schema of the NTK tasks (``ntk.*``), kept beside the main schema in ``config.py``."""

from dataclasses import dataclass, field


@dataclass
class NTKConfig:
    """``ntk.*``: options of the NTK experiments (tasks ``ntk_width`` and ``ntk_finetune``)."""

    widths: list[int] = field(default_factory=lambda: [64, 256, 1024])
    depth: int = 2
    activation: str = "relu"
    n_inputs: int = 16
    num_seeds: int = 3
