"""Probes: measurements taken at chunk boundaries of training.

A probe is built from its config section and a ``ProbeContext``; it carries its own state (e.g. the
last top eigenvectors, for warm starts) and a measurement ``measure(train_state, probe_state, key)``
whose jitted core receives params and data as arguments (never as closed-over constants).
"""

import functools
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
      batch_size: the training batch size (``None``: full batch), for probes of minibatch quantities.
      sampling: how the trainer draws its batches (``train.sampling``).
    """

    apply_fn: Callable
    loss: Callable
    dataset: Dataset
    optimizer: str
    hparams: dict[str, float]
    step_fn: Callable
    batch_size: int | None = None
    sampling: str = "without_replacement"


@functools.lru_cache(maxsize=None)
def jitted(fn: Callable) -> Callable:
    """One ``jax.jit`` wrapper per probe function (so repeated measurements reuse the compilation)."""
    return jax.jit(fn)


class Probe(NamedTuple):
    """A measurement every ``every`` steps.

    ``fn(train_state, probe_state, key, *data) -> (metrics, probe_state)`` is pure (not jitted) and
    receives its arrays ``data`` as arguments, so it can be jitted alone or ``vmap``-ped over a sweep.
    A growing probe's ``fn`` sees only the tracked rows of its state (see ``growth``).
    """

    name: str
    every: int
    init_state: PyTree
    fn: Callable[..., tuple[dict[str, Any], PyTree]]
    data: tuple = ()
    growth: Any = None  # a ``dynamics.probes.tracking.Growth``: the tracked block grows by itself

    def measure(self, train_state, probe_state, key):
        """Run the jitted measurement on this probe's data."""
        return self.measure_with(jitted(self.fn), train_state, probe_state, key)

    def measure_with(self, call: Callable, train_state, probe_state, key, batched: bool = False):
        """Measure with ``call``, the jitted ``fn`` (``batched``: ``jax.vmap``-ped over a sweep's
        points), growing the tracked block first where the probe grows."""
        if self.growth is None:
            return call(train_state, probe_state, key, *self.data)
        return self.growth.measure(call, train_state, probe_state, key, self.data, batched)


PROBES: Registry[Callable[..., Probe]] = Registry("probe", "probes")
