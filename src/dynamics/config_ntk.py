"""Config schema of the NTK tasks (``ntk.*``), kept beside the main schema in ``config.py``.

Task ``ntk_width`` reads the first block (empirical vs infinite-width NTK), task ``ntk`` (fine-tuning vs
kernel solutions, Malladi et al. 2023) the second; each task checks the values it uses.
"""

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class NTKConfig:
    """``ntk.*``: options of the NTK experiments (tasks ``ntk_width`` and ``ntk``)."""

    # ntk_width: NTKMLP([width] * depth) at init vs infinite_width_kernels, on Gaussian inputs
    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512, 1024, 2048])
    depth: int = 2  # hidden layers
    activation: str = "relu"  # relu | erf
    w_std: float = 1.5
    b_std: Optional[float] = 0.1  # null: no biases
    n_inputs: int = 16  # Gaussian inputs x ~ N(0, I) (the kernel is n_inputs x n_inputs)
    input_dim: int = 8
    num_seeds: int = 5  # networks per width (the error is averaged over them)
    method: str = "ntvp"  # empirical_ntk method: jacobian | ntvp
    # ntk: pre-train on source classes, fine-tune on k-shot target classes, compare with kernels
    source_classes: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    target_classes: list[int] = field(default_factory=lambda: [5, 6, 7, 8, 9])
    shots: list[int] = field(default_factory=lambda: [16, 64])  # examples per target class
    pretrain_steps: int = 2000  # full-batch Adam steps on the source task
    pretrain_lr: float = 3e-3
    adam_lr: float = 1e-3  # fine-tuning Adam's lr (SGD's is optimizer.lr)
    kernel_ridge: float = 1e-3  # kernel regressions' ridge, relative to the kernel's largest singular value
    kernel_batch_size: Optional[int] = None  # examples per eNTK block (null: one block)
    # ntk_prompt: a tiny masked LM pre-trained on dynamics.data.corpus; prompt vs [CLS]-head fine-tuning
    # (also reads shots, pretrain_steps, pretrain_lr, adam_lr, kernel_ridge, kernel_batch_size above)
    corpus_size: int = 4000  # pre-training sequences
    template_fraction: float = 0.8  # of them: "<sentence> it was <label word> ." (label agrees)
    other_fraction: float = 0.1  # of them: "<sentence> it was <neutral adjective> ."
    downstream_pool: int = 512  # labelled sentences the k-shot sets are drawn from (data.n_train overrides)
    test_size: int = 512  # downstream test sentences (data.n_test overrides)
    encoder_hidden: int = 32
    encoder_layers: int = 2
    encoder_heads: int = 2
    encoder_intermediate: int = 64
    encoder_activation: str = "gelu"
    pretrain_batch_size: int = 128
    mask_prob: float = 0.15  # MLM masking probability (plus one forced mask per sequence)
    head_init_std: float = 0.02  # the fresh [CLS] head's weights ~ N(0, std²) (BERT's initializer_range)
    lr_scale: str = "absolute"  # absolute: GD lr = optimizer.lr | kernel: optimizer.lr · N / λ_max(K₀)
    target_loss: Optional[float] = None  # stop fine-tuning once the training loss is ≤ this (null: never)
