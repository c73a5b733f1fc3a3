"""Probes: measurements taken at chunk boundaries of training.

A probe is built from its config section and a ``ProbeContext``; it carries its own state (e.g. the
last top eigenvector, for warm starts) and a jitted measurement that receives params and data as
arguments.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from dynamics.data.base import Dataset
from dynamics.registry import Registry

PyTree = object


class ProbeContext(NamedTuple):
    """What a probe may read: the model, the loss, the data and the optimizer's hyperparameters."""

    apply_fn: Callable
    loss: Callable
    dataset: Dataset
    hparams: dict[str, float]


class Probe(NamedTuple):
    """``measure(params, opt_state, state, key) -> (metrics, state)`` every ``every`` steps."""

    name: str
    every: int
    init_state: PyTree
    measure: Callable[[PyTree, PyTree, PyTree, jax.Array], tuple[dict[str, Any], PyTree]]


PROBES: Registry[Callable[..., Probe]] = Registry("probe", "probes")
