"""The host-side training loop: compiled chunks of steps, probes at chunk boundaries, divergence stop."""

import math
from collections.abc import Callable, Iterable
from typing import NamedTuple

import jax
import numpy as np

from dynamics.probes.base import Probe
from dynamics.train.state import TrainState
from dynamics.train.step import make_chunk

Row = dict[str, float | int | bool | None]


class TrainOutcome(NamedTuple):
    """How training ended: ``status`` is ``finished`` or ``diverged`` (then ``diverged_step`` is set)."""

    state: TrainState
    status: str
    diverged_step: int | None


def to_python(value):
    """A JSON-ready scalar: non-finite floats become None (the step is recorded separately)."""
    value = np.asarray(value)
    if value.dtype == bool:
        return bool(value)
    if np.issubdtype(value.dtype, np.integer):
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else None


def run_probes(probes: Iterable[Probe], states: dict, state: TrainState, key: jax.Array) -> Row:
    """Run the probes due at ``state.step`` and update their warm-start states in place."""
    step = int(state.step)
    row: Row = {}
    for probe in probes:
        if probe.every > 0 and step % probe.every == 0:
            metrics, states[probe.name] = probe.measure(state, states[probe.name],
                                                        jax.random.fold_in(key, step))
            row.update({k: to_python(v) for k, v in jax.device_get(metrics).items()})
    return row


def initial_probe_states(probes: Iterable[Probe]) -> dict:
    """The probes' warm-start states before the first measurement."""
    return {p.name: p.init_state for p in probes}


def train(state: TrainState, step_fn: Callable, x: jax.Array, y: jax.Array, *, steps: int, chunk: int,
          probes: list[Probe], probe_key: jax.Array, final_metrics: Callable, on_rows: Callable,
          log_every: int = 1, on_progress: Callable[[int], None] | None = None,
          probe_states: dict | None = None,
          on_chunk_end: Callable[[TrainState, dict, int], None] | None = None) -> TrainOutcome:
    """Train from ``state.step`` to ``steps``.

    Each compiled call runs ``chunk`` steps (``lax.scan``); probes run before each chunk at steps that are
    multiples of their ``every``, and once more at the end. Rows (one per ``log_every`` steps and at
    every probe step) go to ``on_rows`` as soon as a chunk finishes. A non-finite loss stops training
    with status ``diverged``; the rows up to and including that step are kept.

    ``final_metrics(params) -> dict`` gives the last row's metrics (the full training-set loss).
    ``probe_states`` resumes the probes' warm starts (default: their initial states);
    ``on_chunk_end(state, probe_states, step)`` runs after each chunk's rows are written (checkpoints).
    """
    chunks: dict[int, Callable] = {}
    if probe_states is None:
        probe_states = initial_probe_states(probes)
    t = int(state.step)
    while t < steps:
        length = min(chunk, steps - t)
        if length not in chunks:
            chunks[length] = make_chunk(step_fn, length)
        probe_row = run_probes(probes, probe_states, state, probe_key)
        state, metrics = chunks[length](state, x, y)
        metrics = jax.device_get(metrics)
        finite = np.isfinite(metrics["loss"])
        rows = []
        for i in range(length):
            if i == 0 or (t + i) % log_every == 0 or not finite[i]:
                row = {"step": t + i, **{k: to_python(v[i]) for k, v in metrics.items()}}
                rows.append({**row, **probe_row} if i == 0 else row)
            if not finite[i]:
                on_rows(rows)
                return TrainOutcome(state, "diverged", t + i)
        on_rows(rows)
        t += length
        if on_chunk_end is not None:
            on_chunk_end(state, probe_states, t)
        if on_progress is not None:
            on_progress(length)
    final = {"step": t, **{k: to_python(v) for k, v in final_metrics(state.params).items()}}
    final.update(run_probes(probes, probe_states, state, probe_key))
    on_rows([final])
    if final["loss"] is None:
        return TrainOutcome(state, "diverged", t)
    return TrainOutcome(state, "finished", None)
