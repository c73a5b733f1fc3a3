r"""Eigenvalue tracking that grows by itself, for the train task's eigenvalue probes.

With ``probes.<name>.track_fraction = f`` (``sharpness``, ``loss_sharpness``, ``precond_sharpness``,
``ggn_sharpness``) a probe tracks every eigenvalue above ``f`` times the stability threshold, as the
central flows do (:class:`dynamics.curvature.tracking.EigenTracker`; the reference's 1.5/η is
``f = 0.75`` under GD): after each solve, while the smallest tracked eigenvalue is at least
``f · threshold`` and fewer than ``k_max`` are tracked, one more direction joins the block and the
block is re-solved, warm-started; the block never shrinks. Signs stay aligned with the previous
measurement's vectors (the solvers' warm start), and ``<name>_matvecs`` counts every re-solve.

Shapes stay static for checkpoints and sweeps: the probe state holds ``k_max`` rows (the rows beyond
the tracked count are the random directions that will join next, drawn once from the probe's key) and
the tracked ``count``. Growth is decided on the host between measurements, so each tracked count
compiles once (a few per run). In a ``vmap.*`` sweep or a vmapped seed set, the points share one
count: the block grows when any point needs it (a point with fewer eigenvalues at its edge then tracks
a few more than it needs; its values are still exact).

The threshold is the optimizer's, from :mod:`dynamics.optim.thresholds`, in the probe's units
(λ_max(H) for ``sharpness`` and ``ggn_sharpness``; λ_max(P⁻¹H) for ``precond_sharpness``), with the
hyperparameters read from the optimizer state (so each point of a learning-rate sweep has its own), or
the number ``probes.<name>.threshold``. Logged per measurement: ``<name>_threshold``,
``<name>_tracked`` and the tracked values ``<name>``, ``<name>_2``, …, ``<name>_<tracked>``.
"""

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dynamics.curvature.preconditioned import search_state
from dynamics.errors import check
from dynamics.optim.thresholds import stability_of

PyTree = object
# the threshold table's metric that each growing probe is measured in (loss_sharpness: none, it
# measures another loss than the one the optimizer's threshold is about)
UNITS = {"sharpness": "sharpness", "ggn_sharpness": "sharpness",
         "precond_sharpness": "precond_sharpness"}
_INJECTED = (optax.InjectStatefulHyperparamsState, optax.InjectHyperparamsState)
# optimizers whose threshold needs logged columns (normalized GD: 2‖g‖/η per row)
_PER_ROW = {"normalized_gd"}


def missing_threshold(probe: str, optimizer: str) -> str | None:
    """Why ``probes.<probe>.track`` has no threshold to grow against, or ``None`` when it has one."""
    units = UNITS.get(probe)
    stability = stability_of(optimizer)
    if units is None:
        return f"{probe} measures another loss than the one optimizer {optimizer!r} trains"
    if stability is None:
        return f"no known stability threshold for optimizer {optimizer!r}"
    if optimizer in _PER_ROW:
        return f"the threshold of {optimizer!r} changes every step"
    if stability.metric != units:
        return f"optimizer {optimizer!r}'s threshold is on {stability.metric}, not on {units}"
    return None


def check_threshold(probe: str, optimizer: str, threshold: float | None) -> None:
    """One-line ``ConfigError`` naming ``probes.<probe>.threshold`` when a growing probe has nothing
    to grow against (no number given and no usable table threshold)."""
    reason = None if threshold is not None else missing_threshold(probe, optimizer)
    check(reason is None, f"probes.{probe}.threshold", threshold,
          f"a number > 0 to track against ({reason})")


def threshold_fn(optimizer: str, hparams: dict, threshold: float | None) -> Callable:
    """``fn(train_state) -> threshold`` (traced): the number if given, else the table's formula with
    the hyperparameters injected in the optimizer state (per point in a sweep) over ``hparams``."""
    if threshold is not None:
        return lambda state: jnp.asarray(threshold, jnp.float32)
    stability = stability_of(optimizer)

    def fn(state):
        found = search_state(state.opt_state, _INJECTED)
        injected = found[0].hyperparams if found is not None else {}
        return jnp.asarray(stability.threshold({**hparams, **injected}, {}))

    return fn


class Growth(NamedTuple):
    """How a probe's block grows: while its smallest tracked value ``>= fraction * threshold`` and
    fewer than ``k_max`` are tracked (host side, between warm-started solves)."""

    prefix: str
    fraction: float
    k_max: int

    def initial_state(self, block: PyTree, k: int) -> dict:
        """The probe state: ``k_max`` stacked start vectors and the tracked ``count`` (``k``)."""
        return {"vectors": block, "count": jnp.asarray(k, jnp.int32)}

    def _wants_more(self, metrics: dict, count: int) -> bool:
        last = np.asarray(metrics[self.prefix if count == 1 else f"{self.prefix}_{count}"])
        edge = self.fraction * np.asarray(metrics[f"{self.prefix}_threshold"])
        return bool(np.any(last >= edge))  # NaN (e.g. no preconditioner yet) never grows

    def measure(self, call: Callable, train_state, probe_state: dict, key, data: tuple,
                batched: bool) -> tuple[dict, dict]:
        """Solve on the tracked rows, grow while wanted; ``call`` is the (jitted, maybe vmapped)
        probe function on a block of the tracked count."""
        axis = 1 if batched else 0
        vectors = probe_state["vectors"]
        count = int(np.max(np.asarray(probe_state["count"])))
        matvecs = 0
        head, tail = _split(vectors, count, axis)
        while True:
            metrics, solved = call(train_state, head, key, *data)
            matvecs = matvecs + np.asarray(metrics[f"{self.prefix}_matvecs"])
            if count >= self.k_max or not self._wants_more(metrics, count):
                vectors = _join(solved, tail, axis)
                break
            count += 1
            head, tail = _grow(solved, tail, axis)
        counts = jnp.full_like(probe_state["count"], count)
        metrics = {**metrics, f"{self.prefix}_matvecs": matvecs, f"{self.prefix}_tracked": counts}
        return metrics, {"vectors": vectors, "count": counts}


# The block's slicing and stacking, each one jitted program over the whole pytree (eager, every leaf
# and every slice compiled its own tiny program); exact copies, so the rows are bit-identical.
@partial(jax.jit, static_argnums=(1, 2))
def _split(stacked: PyTree, count: int, axis: int) -> tuple[PyTree, PyTree]:
    """Rows ``:count`` and ``count:`` of every leaf of a stacked pytree along ``axis``."""
    return (jax.tree.map(lambda v: jax.lax.slice_in_dim(v, 0, count, axis=axis), stacked),
            jax.tree.map(lambda v: jax.lax.slice_in_dim(v, count, None, axis=axis), stacked))


@partial(jax.jit, static_argnums=2)
def _join(solved: PyTree, tail: PyTree, axis: int) -> PyTree:
    """The solved rows stacked on the untracked ones along ``axis``."""
    return jax.tree.map(lambda a, b: jnp.concatenate([a, b], axis=axis), solved, tail)


@partial(jax.jit, static_argnums=2)
def _grow(solved: PyTree, tail: PyTree, axis: int) -> tuple[PyTree, PyTree]:
    """The next block (the solved rows and the first untracked one) and the rows after it."""
    return (jax.tree.map(lambda a, b: jnp.concatenate(
                [a, jax.lax.slice_in_dim(b, 0, 1, axis=axis)], axis=axis), solved, tail),
            jax.tree.map(lambda b: jax.lax.slice_in_dim(b, 1, None, axis=axis), tail))
