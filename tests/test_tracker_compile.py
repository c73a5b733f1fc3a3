"""A Tracker loop compiles one program: the measurement, once, whatever the step, seed, tolerance,
parameter values or batch values. Counted as lowerings (jaxpr -> MLIR events of jax.monitoring,
emitted whether or not the persistent compilation cache then has the program), not timed."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import monitoring
from jax.flatten_util import ravel_pytree

import dynamics
from dynamics import compiled

LOWER = "/jax/core/compile/jaxpr_to_mlir_module_duration"
_events: list[str] = []
monitoring.register_event_duration_secs_listener(lambda name, *a, **kw: _events.append(name))


def lowerings(fn) -> int:
    start = len(_events)
    fn()
    return sum(name == LOWER for name in _events[start:])


def loss_fn(p, x, y):
    return 0.5 * jnp.mean(jnp.sum((jnp.tanh(x @ p["w1"]) @ p["w2"] - y) ** 2, axis=1))


def test_one_compilation_per_tracker_loop():
    rng = np.random.default_rng(0)
    x, y = jnp.asarray(rng.normal(size=(32, 5))), jnp.asarray(rng.normal(size=(32, 3)))
    params = {"w1": jnp.asarray(rng.normal(size=(5, 7))), "w2": jnp.asarray(rng.normal(size=(7, 3)))}
    jax.clear_caches()
    compiled.cache_clear()

    # inputs made before counting (an eager jnp operation compiles a program of its own)
    points = [jax.tree.map(lambda a: 0.9 ** step * a, params) for step in range(4)]
    batches = [x + step for step in range(4)]
    tracker = dynamics.Tracker(loss_fn, every=1, tol=1e-4, max_iters=60)
    assert lowerings(lambda: tracker(0, params, x, y)) == 1  # the measurement, nothing eager

    def more():
        for step in range(1, 4):  # new steps, parameter values and batch values
            tracker(step, points[step], batches[step], y)
        other = dynamics.Tracker(loss_fn, every=1, tol=1e-3, max_iters=60, seed=7)
        other(5, points[3], x, y)  # another tracker, seed and tolerance: same program

    assert lowerings(more) == 0

    # the numbers: the top Hessian eigenvalue at the last point (dense oracle)
    flat, unravel = ravel_pytree(points[3])
    H = np.asarray(jax.jit(jax.hessian(lambda f: loss_fn(unravel(f), batches[3], y)))(flat),
                   np.float64)
    assert tracker.rows[3]["sharpness"] == pytest.approx(np.linalg.eigvalsh(H)[-1], rel=1e-3)
    assert tracker.rows[3]["sharpness_converged"] is True


def test_same_seed_same_rows():
    rng = np.random.default_rng(1)
    x, y = jnp.asarray(rng.normal(size=(16, 4))), jnp.asarray(rng.normal(size=(16, 2)))
    params = {"w1": jnp.asarray(rng.normal(size=(4, 6))), "w2": jnp.asarray(rng.normal(size=(6, 2)))}
    rows = []
    for _ in range(2):
        tracker = dynamics.Tracker(loss_fn, every=2, tol=1e-4, trace_samples=3, seed=3)
        for step in range(5):
            tracker(step, jax.tree.map(lambda a: (1 - 0.05 * step) * a, params), x, y)
        rows.append(tracker.rows)
    assert rows[0] == rows[1]
