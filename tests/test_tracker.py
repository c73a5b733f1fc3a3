"""dynamics.Tracker: the examples/tracker_nnx.py loop (flax.nnx + optax Adam) runs, writes the run's
metrics.jsonl and figures, and its numbers match dense oracles (jax.hessian + eigh, explicit J Jᵀ)."""

import importlib.util
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import dynamics

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tracker_nnx.py"


def load_example():
    spec = importlib.util.spec_from_file_location("tracker_nnx", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tracker")
    tracker, params, opt_state, loss_fn, apply_fn, (x, y) = load_example().main(
        steps=20, every=10, tol=1e-5, width=16, out=str(out))
    return out, tracker, params, opt_state, loss_fn, apply_fn, x, y


def test_example_writes_metrics_and_figures(run):
    out, tracker, *_ = run
    lines = (out / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["step"] for r in rows] == list(range(20))
    # in memory a non-finite value stays a float (nan); the file writes null, as a run does
    clean = [{k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in r.items()}
             for r in tracker.rows[:20]]
    assert rows == clean
    measured = [r for r in rows if "sharpness" in r]
    assert [r["step"] for r in measured] == [0, 10]
    for r in measured:
        for name in ("sharpness", "hessian_trace", "ntk_trace", "ntk_change", "ntk_alignment"):
            assert isinstance(r[name], float) and np.isfinite(r[name]), name
        assert isinstance(r["sharpness_matvecs"], int) and r["sharpness_converged"] is True
    assert measured[0]["precond_sharpness"] is None  # Adam before its first update: no P (null)
    assert measured[1]["precond_sharpness"] > 0
    assert {"loss.png", "sharpness.png", "precond_sharpness.png",
            "hessian_trace.png"} <= {p.name for p in (out / "figures").iterdir()}


def test_tracker_matches_dense_oracles_and_keeps_warm_starts(run):
    _, tracker, params, opt_state, loss_fn, apply_fn, x, y = run
    assert dynamics.Tracker is type(tracker)
    row = tracker(20, params, x, y, opt_state=opt_state)  # warm-started from step 10

    flat, unravel = ravel_pytree(params)
    H = np.asarray(jax.jit(jax.hessian(lambda f: loss_fn(unravel(f), x, y)))(flat), np.float64)
    H = 0.5 * (H + H.T)
    assert row["sharpness"] == pytest.approx(np.linalg.eigvalsh(H)[-1], rel=1e-4)

    adam = opt_state[0]  # optax.adam = chain(scale_by_adam, scale_by_learning_rate)
    t, b1, b2, eps = int(adam.count), 0.9, 0.999, 1e-8
    nu = np.asarray(ravel_pytree(adam.nu)[0], np.float64)
    P = (1 - b1 ** t) * (np.sqrt(nu / (1 - b2 ** t)) + eps)  # locuslab convention
    S = H / np.sqrt(np.outer(P, P))
    assert row["precond_sharpness"] == pytest.approx(np.linalg.eigvalsh(S)[-1], rel=1e-4)

    assert abs(row["hessian_trace"] - np.trace(H)) < 5 * row["hessian_trace_stderr"]

    xp = x[:16]
    J = np.asarray(jax.jit(jax.jacobian(lambda f: apply_fn(unravel(f), xp)))(flat), np.float64)  # (N, O, P)
    K = np.einsum("iap,jbp->ijab", J, J)
    np.testing.assert_allclose(np.asarray(tracker.ntk), K, rtol=2e-4, atol=1e-4 * np.abs(K).max())
    n, o = K.shape[0], K.shape[2]
    assert row["ntk_trace"] == pytest.approx(np.einsum("iiaa->", K) / (n * o), rel=1e-4)

    cold = tracker.rows[0]["sharpness_matvecs"]
    assert row["sharpness_matvecs"] < cold and row["sharpness_converged"]


def test_tracker_plain_loop_without_files(key):
    """A loss that closes over its data (no batch), plain dicts, no log_dir, cadence."""
    A = jnp.diag(jnp.arange(1.0, 7.0))
    calls = []
    tracker = dynamics.Tracker(lambda w: 0.5 * w @ A @ w, every=3, tol=1e-6,
                               measures={"norm": lambda w: jnp.linalg.norm(w),
                                         "extra": lambda w: {"a": 1, "b": 2.5}})
    w = jnp.ones(6)
    for step in range(7):
        row = tracker(step, w, loss=0.5 * w @ A @ w)
        calls.append(row)
        w = 0.9 * w
    assert [("sharpness" in r) for r in calls] == [True, False, False, True, False, False, True]
    assert calls[3]["sharpness"] == pytest.approx(6.0, rel=1e-5)
    assert calls[6]["norm"] == pytest.approx(float(jnp.linalg.norm(0.9 ** 6 * jnp.ones(6))))
    assert calls[0]["extra_a"] == 1 and calls[0]["extra_b"] == 2.5
    assert all(type(v) in (int, float, bool) for r in calls for v in r.values())
    with pytest.raises(ValueError, match="figures_dir"):
        tracker.plot()
