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


def chunk_rows(t: int, metrics: dict, probe_row: Row, log_every: int) -> tuple[list[Row], int | None]:
    """Rows of one chunk that starts at step ``t`` (metrics: arrays over the chunk's steps).

    Keeps the first step (with the probes' values), every ``log_every``-th step and a non-finite step,
    where it stops and returns that step as the second value.
    """
    finite = np.isfinite(metrics["loss"])
    rows = []
    for i in range(len(finite)):
        if i == 0 or (t + i) % log_every == 0 or not finite[i]:
            row = {"step": t + i, **{k: to_python(v[i]) for k, v in metrics.items()}}
            rows.append({**row, **probe_row} if i == 0 else row)
        if not finite[i]:
            return rows, t + i
    return rows, None


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
        rows, diverged = chunk_rows(t, jax.device_get(metrics), probe_row, log_every)
        on_rows(rows)
        if diverged is not None:
            return TrainOutcome(state, "diverged", diverged)
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


@jax.jit
def _hold(mask: jax.Array, old: TrainState, new: TrainState) -> TrainState:
    """``old`` on the lanes where ``mask`` is set, ``new`` elsewhere (PRNG keys: always ``new``)."""

    def pick(a, b):
        if jax.dtypes.issubdtype(b.dtype, jax.dtypes.prng_key):
            return b
        return jax.numpy.where(mask.reshape(mask.shape + (1,) * (b.ndim - 1)), a, b)

    return jax.tree.map(pick, old, new)


def train_vmapped(states: TrainState, step_fn: Callable, x: jax.Array, y: jax.Array, *, steps: int,
                  chunk: int, probes: list[Probe], probe_keys: jax.Array, final_metrics: Callable,
                  on_rows: Callable[[int, list[Row]], None], log_every: int = 1,
                  on_progress: Callable[[int], None] | None = None) -> list[TrainOutcome]:
    """``train`` for a stack of independent runs (leading axis of ``states``, ``x``, ``y``, the probes'
    data and init states, and ``probe_keys``) in one compiled program per chunk length.

    Rows go to ``on_rows(i, rows)`` per point. A point whose loss becomes non-finite is recorded as
    diverged at that step and masked: no more rows, and its state is held at the last finite chunk
    boundary, so its updates are discarded and its probes measure finite parameters (an iterative
    eigensolver on NaNs would run to ``max_iters`` and hold up every lane of the vmapped loop). A sweep
    with a diverged point thus costs about what a healthy sweep of the same size costs.
    """
    n = int(jax.tree.leaves(states.step)[0].shape[0])
    chunks: dict[int, Callable] = {}
    measure = {p.name: jax.jit(jax.vmap(p.fn)) for p in probes}
    probe_states = initial_probe_states(probes)
    diverged: list[int | None] = [None] * n
    t = 0

    def probe_rows(states, step):
        rows = [{} for _ in range(n)]
        keys = jax.vmap(lambda k: jax.random.fold_in(k, step))(probe_keys)
        for probe in probes:
            if probe.every > 0 and step % probe.every == 0:
                metrics, probe_states[probe.name] = probe.measure_with(
                    measure[probe.name], states, probe_states[probe.name], keys, batched=True)
                metrics = jax.device_get(metrics)
                for i in range(n):
                    rows[i].update({k: to_python(v[i]) for k, v in metrics.items()})
        return rows

    while t < steps and any(d is None for d in diverged):
        length = min(chunk, steps - t)
        if length not in chunks:
            scan = make_chunk(step_fn, length)
            chunks[length] = jax.jit(jax.vmap(scan))
        probes_now = probe_rows(states, t)
        before = states
        states, metrics = chunks[length](states, x, y)
        metrics = jax.device_get(metrics)
        for i in range(n):
            if diverged[i] is None:
                rows, diverged[i] = chunk_rows(t, {k: v[i] for k, v in metrics.items()},
                                               probes_now[i], log_every)
                on_rows(i, rows)
        masked = np.array([d is not None for d in diverged])
        if masked.any():
            states = _hold(masked, before, states)
        t += length
        if on_progress is not None:
            on_progress(length)
    finals = jax.device_get(jax.jit(jax.vmap(final_metrics))(states.params, x, y))
    probes_now = probe_rows(states, t)
    outcomes = []
    for i in range(n):
        state_i = jax.tree.map(lambda a: a[i], states)
        if diverged[i] is None:
            final = {"step": t, **{k: to_python(v[i]) for k, v in finals.items()}, **probes_now[i]}
            on_rows(i, [final])
            if final["loss"] is None:
                diverged[i] = t
        status = "finished" if diverged[i] is None else "diverged"
        outcomes.append(TrainOutcome(state_i, status, diverged[i]))
    return outcomes
