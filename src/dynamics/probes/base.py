"""Probes: measurements taken at chunk boundaries of training.

A probe is built from its config section and a ``ProbeContext``; it carries its own state (e.g. the
last top eigenvectors, for warm starts) and a measurement ``measure(train_state, probe_state, key)``
whose jitted core receives params and data as arguments (never as closed-over constants).
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from dynamics.data.base import Dataset
from dynamics.registry import Registry

PyTree = object


class ProbeContext(NamedTuple):
    """What a probe may read.

    Attributes:
      apply_fn: the model's ``apply(params, x)``.
      loss: the training loss ``loss(outputs, targets)``.
      dataset: the data.
      optimizer: the optimizer's registered name.
      hparams: its traced hyperparameters (``learning_rate``, ``momentum``, ``b1``, ...).
      step_fn: the pure training step ``step(state, x, y) -> (state, metrics)`` (for midpoints).
    """

    apply_fn: Callable
    loss: Callable
    dataset: Dataset
    optimizer: str
    hparams: dict[str, float]
    step_fn: Callable


class Probe(NamedTuple):
    """``measure(train_state, probe_state, key) -> (metrics, probe_state)`` every ``every`` steps."""

    name: str
    every: int
    init_state: PyTree
    measure: Callable[[Any, PyTree, jax.Array], tuple[dict[str, Any], PyTree]]


PROBES: Registry[Callable[..., Probe]] = Registry("probe", "probes")
