"""Config schema of the NTK tasks: one typed node per task under the family node ``ntk``.

- ``ntk.width.*``: task ``ntk_width`` (empirical vs infinite-width NTK);
- ``ntk.finetune.*``: task ``ntk`` (fine-tuning vs kernel solutions on mnist1d, Malladi et al. 2023);
- ``ntk.prompt.*``: task ``ntk_prompt`` (prompt vs [CLS]-head fine-tuning of a tiny masked LM).

Generic keys keep their meaning: ``optimizer.lr`` is always a real step size (GD's, where a task uses
it); task-specific step sizes (Adam's, a step relative to the kernel) live in the task's node. Each task
checks its node (``validate_*``) before it builds anything.
"""

from dataclasses import dataclass, field
from typing import Optional

from dynamics.errors import check


@dataclass
class NTKWidthConfig:
    """``ntk.width.*``: NTKMLP([width] * depth) at init vs ``infinite_width_kernels`` on Gaussian inputs."""

    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512, 1024, 2048])
    depth: int = 2  # hidden layers
    activation: str = "relu"  # relu | erf
    w_std: float = 1.5
    b_std: Optional[float] = 0.1  # null: no biases
    n_inputs: int = 16  # Gaussian inputs x ~ N(0, I) (the kernel is n_inputs x n_inputs)
    input_dim: int = 8
    num_seeds: int = 8  # networks per width: seeds cfg.seed + i (each gives one slope)
    method: str = "ntvp"  # empirical_ntk method: jacobian | ntvp
    # the infinite-width kernel is computed with this W_std (null: w_std). A different value is the
    # negative control: the empirical kernel then converges to something else and the error plateaus.
    reference_w_std: Optional[float] = None


@dataclass
class NTKFinetuneConfig:
    """``ntk.finetune.*``: pre-train on source classes, fine-tune on k-shot target classes (GD with
    ``optimizer.lr``, Adam with ``adam_lr``), compare with kernel solutions at the pre-trained weights."""

    source_classes: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    target_classes: list[int] = field(default_factory=lambda: [5, 6, 7, 8, 9])
    shots: list[int] = field(default_factory=lambda: [16, 64])  # examples per target class
    pretrain_steps: int = 2000  # full-batch Adam steps on the source task
    pretrain_lr: float = 3e-3
    kernel_batch_size: Optional[int] = None  # examples per eNTK block (null: one block)
    # Adam half, in the A-SignGD kernel's regime (tasks/ntk_adam.py): binary sub-task of two target
    # classes (f = f_b − f_a of the pre-trained head), one example per step, ``adam_epochs`` passes
    sign_classes: list[int] = field(default_factory=lambda: [5, 6])
    adam_lr: float = 1e-4  # fine-tuning Adam's step size (GD's is optimizer.lr)
    adam_b1: float = 0.0  # 0, 0: no moment averaging, so Adam is SignGD up to ε (the kernel's regime)
    adam_b2: float = 0.0
    adam_eps: float = 1e-8
    adam_epochs: int = 3


@dataclass
class NTKPromptConfig:
    """``ntk.prompt.*``: a tiny masked LM pre-trained on ``dynamics.data.corpus``; prompt-based
    fine-tuning for ``train.steps`` steps vs its eNTK kernel dynamics, with a meaningless-prompt control
    (an MLM pre-trained with ``control_template_fraction``) and, where ``reported`` names them, a
    [CLS]-head variant and Adam runs."""

    shots: list[int] = field(default_factory=lambda: [16, 64])
    corpus_size: int = 4000  # pre-training sequences
    template_fraction: float = 0.8  # of them: "<sentence> it was <label word> ." (label agrees)
    # the negative control, run in every seed: a second MLM pre-trained with this template_fraction (0:
    # the corpus never shows the template, so the prompt is meaningless). null: no control (the verdict
    # then misses its control evidence and fails)
    control_template_fraction: Optional[float] = 0.0
    other_fraction: float = 0.1  # of them: "<sentence> it was <neutral adjective> ."
    downstream_pool: int = 512  # labelled sentences the k-shot sets are drawn from (data.n_train overrides)
    test_size: int = 512  # downstream test sentences (data.n_test overrides)
    encoder_hidden: int = 32
    encoder_layers: int = 2
    encoder_heads: int = 2
    encoder_intermediate: int = 64
    encoder_activation: str = "gelu"
    pretrain_steps: int = 2400
    pretrain_lr: float = 3e-3
    pretrain_batch_size: int = 128
    mask_prob: float = 0.15  # MLM masking probability (plus one forced mask per sequence)
    head_init_std: float = 0.02  # the fresh [CLS] head's weights ~ N(0, std²) (BERT's initializer_range)
    # GD's step relative to each variant's kernel: η = relative_lr · N / λ_max(K₀) (the linearized model
    # is stable below 4 for 2-class cross-entropy). null: GD's step is optimizer.lr for both variants.
    relative_lr: Optional[float] = 1.0
    adam_lr: float = 1e-3  # fine-tuning Adam's step size (reported, not judged)
    kernel_ridge: float = 0.1  # A-SignGD kernel regression (Adam), relative to σ_max(K)
    kernel_batch_size: Optional[int] = 64  # examples per Jacobian block (one compiled program for every N)
    # runs that are reported, not judged: "head" (the [CLS]-head variant), "adam" (Adam fine-tuning of
    # the prompt (and head) vs A-SignGD kernel regression)
    reported: list[str] = field(default_factory=list)


@dataclass
class NTKConfig:
    """``ntk.*``: the NTK family, one node per task."""

    width: NTKWidthConfig = field(default_factory=NTKWidthConfig)
    finetune: NTKFinetuneConfig = field(default_factory=NTKFinetuneConfig)
    prompt: NTKPromptConfig = field(default_factory=NTKPromptConfig)


def _shots(key: str, shots: list[int]) -> None:
    check(len(shots) >= 1 and all(k >= 1 for k in shots), key, shots, "a list of positive shot counts")


def validate_width(n: NTKWidthConfig) -> None:
    check(len(n.widths) >= 2 and all(w > 0 for w in n.widths), "ntk.width.widths", n.widths,
          "two or more positive widths")
    check(n.depth >= 1, "ntk.width.depth", n.depth, "an integer >= 1")
    check(n.activation in ("relu", "erf"), "ntk.width.activation", n.activation, "relu | erf")
    check(n.method in ("jacobian", "ntvp"), "ntk.width.method", n.method, "jacobian | ntvp")
    check(n.num_seeds >= 2, "ntk.width.num_seeds", n.num_seeds, "an integer >= 2 (the slope's SE)")
    check(n.n_inputs >= 2, "ntk.width.n_inputs", n.n_inputs, "an integer >= 2")
    check(n.input_dim >= 1, "ntk.width.input_dim", n.input_dim, "an integer >= 1")
    check(n.w_std > 0, "ntk.width.w_std", n.w_std, "a float > 0")
    check(n.reference_w_std is None or n.reference_w_std > 0, "ntk.width.reference_w_std",
          n.reference_w_std, "null or a float > 0")


def validate_finetune(n: NTKFinetuneConfig, data_name: str) -> None:
    check(data_name == "mnist1d", "data.name", data_name, "mnist1d (task ntk)")
    check(len(n.source_classes) == len(n.target_classes) >= 2, "ntk.finetune.target_classes",
          n.target_classes, f"as many classes as ntk.finetune.source_classes ({len(n.source_classes)}), "
          "at least 2")
    check(not set(n.source_classes) & set(n.target_classes), "ntk.finetune.target_classes",
          n.target_classes, "classes disjoint from ntk.finetune.source_classes")
    _shots("ntk.finetune.shots", n.shots)
    check(n.pretrain_steps >= 1, "ntk.finetune.pretrain_steps", n.pretrain_steps, "an integer >= 1")
    check(n.pretrain_lr > 0, "ntk.finetune.pretrain_lr", n.pretrain_lr, "a float > 0")
    check(n.adam_lr > 0, "ntk.finetune.adam_lr", n.adam_lr, "a float > 0")
    check(len(n.sign_classes) == 2 and set(n.sign_classes) <= set(n.target_classes)
          and n.sign_classes[0] != n.sign_classes[1], "ntk.finetune.sign_classes", n.sign_classes,
          "two distinct classes of ntk.finetune.target_classes")
    for key in ("adam_b1", "adam_b2"):
        check(0 <= getattr(n, key) < 1, f"ntk.finetune.{key}", getattr(n, key), "a float in [0, 1)")
    check(n.adam_eps >= 0, "ntk.finetune.adam_eps", n.adam_eps, "a float >= 0")
    check(n.adam_epochs >= 1, "ntk.finetune.adam_epochs", n.adam_epochs, "an integer >= 1")
    check(n.kernel_batch_size is None or n.kernel_batch_size > 0, "ntk.finetune.kernel_batch_size",
          n.kernel_batch_size, "null or an integer > 0")


PROMPT_REPORTED = ("head", "adam")


def validate_prompt(n: NTKPromptConfig, n_train: Optional[int]) -> None:
    _shots("ntk.prompt.shots", n.shots)
    pool = n_train if n_train is not None else n.downstream_pool
    check(pool >= 2 and max(n.shots) <= pool // 2, "data.n_train", n_train,
          f"null or an integer >= 2·max(ntk.prompt.shots) = {2 * max(n.shots)} (the k-shot pool)")
    for key in ("downstream_pool", "test_size"):
        check(getattr(n, key) >= 2, f"ntk.prompt.{key}", getattr(n, key), "an integer >= 2")
    for key in ("corpus_size", "encoder_hidden", "encoder_layers", "encoder_heads", "encoder_intermediate",
                "pretrain_steps", "pretrain_batch_size"):
        check(getattr(n, key) >= 1, f"ntk.prompt.{key}", getattr(n, key), "an integer >= 1")
    check(0 <= n.template_fraction <= 1, "ntk.prompt.template_fraction", n.template_fraction,
          "a float in [0, 1]")
    check(0 <= n.other_fraction <= 1 - n.template_fraction, "ntk.prompt.other_fraction", n.other_fraction,
          f"a float in [0, 1 − ntk.prompt.template_fraction = {1 - n.template_fraction:g}]")
    check(n.control_template_fraction is None or 0 <= n.control_template_fraction <= 1 - n.other_fraction,
          "ntk.prompt.control_template_fraction", n.control_template_fraction,
          f"null or a float in [0, 1 − ntk.prompt.other_fraction = {1 - n.other_fraction:g}]")
    check(n.encoder_hidden % n.encoder_heads == 0, "ntk.prompt.encoder_heads", n.encoder_heads,
          f"a divisor of ntk.prompt.encoder_hidden = {n.encoder_hidden}")
    check(0 < n.mask_prob < 1, "ntk.prompt.mask_prob", n.mask_prob, "a float in (0, 1)")
    for key in ("pretrain_lr", "adam_lr"):
        check(getattr(n, key) > 0, f"ntk.prompt.{key}", getattr(n, key), "a float > 0")
    check(n.relative_lr is None or n.relative_lr > 0, "ntk.prompt.relative_lr", n.relative_lr,
          "null (GD's step is optimizer.lr) or a float > 0")
    check(n.head_init_std >= 0, "ntk.prompt.head_init_std", n.head_init_std, "a float >= 0")
    check(n.kernel_ridge >= 0, "ntk.prompt.kernel_ridge", n.kernel_ridge, "a float >= 0")
    check(n.kernel_batch_size is None or n.kernel_batch_size > 0, "ntk.prompt.kernel_batch_size",
          n.kernel_batch_size, "null or an integer > 0")
    check(set(n.reported) <= set(PROMPT_REPORTED), "ntk.prompt.reported", n.reported,
          "a list of " + " | ".join(PROMPT_REPORTED))
