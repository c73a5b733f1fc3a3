"""Optimizers as optax transformations, built by name, with traced hyperparameters.

``build_optimizer(name, **hparams)`` returns ``optax.inject_hyperparams(factory)(...)``: the learning rate
and the other numeric hyperparameters live in the optimizer state (``state.hyperparams``), so a sweep over
them reuses one compilation and they can be ``vmap``-ped.

Conventions (optax's, written out):

- ``gd``: θ ← θ − η (g + wd·θ) (full batch or minibatch: the trainer decides the batch; wd = 0 by
  default).
- ``normalized_gd``: θ ← θ − η g/‖g‖ (global norm), i.e. step size η_t = η/‖g‖.
- ``momentum`` (heavy ball, as PyTorch's SGD): m ← β m + g; θ ← θ − η m. Stable on a quadratic of
  curvature λ iff λ < (2 + 2β)/η.
- ``nesterov``: optax's Nesterov form of the above.
- ``adam`` / ``adamw``: bias-corrected moments, θ ← θ − η m̂/(√ν̂ + ε) (− η·wd·θ for adamw).
- ``rmsprop``: ν ← β2 ν + (1 − β2) g²; θ ← θ − η g/√(ν + ε) (optax: ε inside the square root);
  ``optimizer.bias_correction=true`` divides ν by 1 − β2^t (PyTorch's Adam with β1 = 0, the "RMSprop"
  of the SVAG / square-root-rule paper's code).

Beyond these seven names (``optim/aliases.py``): every optimizer alias of optax core and
``optax.contrib`` by name, ``build_alias(name, learning_rate, **args)`` with traced hyperparameters, the
``ALIASES`` table (plain / needs extra update arguments / unsupported, with reasons) and
``extra_args_for``. Stability thresholds (``optim/thresholds.py``): ``stability_of(name) -> Stability |
None`` (``metric``, ``threshold(hparams, columns)``, ``label``, ``preconditioner``) and
``not_applicable(name)``.
"""

from dynamics.optim.aliases import (ALIASES, AliasSpec, alias_names, build_alias, extra_args_for,
                                    get_alias, traced_hyperparams)
from dynamics.optim.registry import OPTIMIZERS, build_optimizer, hyperparams_of
from dynamics.optim.thresholds import (STABILITY, Stability, not_applicable, stability_of,
                                       threshold_names)

__all__ = [
    "ALIASES",
    "AliasSpec",
    "OPTIMIZERS",
    "STABILITY",
    "Stability",
    "alias_names",
    "build_alias",
    "build_optimizer",
    "extra_args_for",
    "get_alias",
    "hyperparams_of",
    "not_applicable",
    "stability_of",
    "threshold_names",
    "traced_hyperparams",
]
