"""Kernel-behaviour diagnostics shared by the fine-tuning experiments (tasks ``ntk`` and ``ntk_prompt``).

- ``relative_change(a, b)``: ‖a − b‖_F / ‖b‖_F (kernel change ‖K_T − K_0‖/‖K_0‖, function gaps);
- ``accuracy(f, labels)``: fraction of rows whose arg-max output is the label;
- ``agreement(f, g)``: fraction of rows where two models predict the same class.

All return Python floats (they are computed once per run, outside jit).
"""

import jax.numpy as jnp

from dynamics.losses import accuracy as _batch_accuracy


def relative_change(a, b) -> float:
    """‖a − b‖_F / ‖b‖_F."""
    return float(jnp.linalg.norm(jnp.ravel(a - b)) / jnp.linalg.norm(jnp.ravel(b)))


def accuracy(f, labels) -> float:
    """Fraction of rows of ``f`` (N, classes) whose arg-max is the label."""
    return float(_batch_accuracy(f, labels))


def agreement(f, g) -> float:
    """Fraction of rows where ``f`` and ``g`` (N, classes) have the same arg-max."""
    return float(jnp.mean(jnp.argmax(f, axis=-1) == jnp.argmax(g, axis=-1)))
