"""Eigenvalue probes whose tracked block grows by itself (``probes.<name>.track_fraction``): the tracked
count and values against a dense float64 Hessian, per point of a vmapped batch, with the optimizer's
threshold read from its state; the run-level wiring (thresholds per swept learning rate, one count per
sweep, byte-identical resume) and the one-line config errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from dynamics.errors import ConfigError
from dynamics.io import read_metrics
from dynamics.probes import PROBES
from dynamics.run import run
from dynamics.validation import validate
from test_probes import dense, setup

OFF = ("probes.eval.every=0",)


def expected_count(evals_desc: np.ndarray, edge: float, k: int, k_max: int) -> int:
    """The growth rule on exact eigenvalues: grow while the smallest tracked one is >= edge."""
    count = k
    while count < k_max and evals_desc[count - 1] >= edge:
        count += 1
    return count


def growing(ctx, state, k=1, k_max=3, **options):
    return PROBES.get("sharpness")(ctx, state.params, jax.random.key(3), every=10, tol=1e-9,
                                   max_iters=2000, method="lobpcg", k=k, k_max=k_max, **options)


def top_evals(ctx, state, data):
    """The dense float64 Hessian's eigenvalues, largest first."""
    return np.linalg.eigvalsh(dense(ctx.loss, ctx.apply_fn, state.params, data.x_train,
                                    data.y_train))[::-1]


# Each tracked count is one compiled solve: k_max = 3 keeps them few. At 0.5 the block stops at k_max
# (λ3 ≥ λ1/2), at 0.9 below the edge (λ2 < 0.9 λ1).
@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_growing_block_tracks_every_eigenvalue_above_the_fraction_of_a_given_threshold(fraction):
    with jax.enable_x64(True):
        ctx, state, data = setup(steps=3)
        evals = top_evals(ctx, state, data)
        threshold = float(evals[0])  # the edges fall between distinct eigenvalues of this net
        probe = growing(ctx, state, threshold=threshold, track_fraction=fraction)
        metrics, new_state = probe.measure(state, probe.init_state, jax.random.key(4))
        count = expected_count(evals, fraction * threshold, 1, 3)
        assert count == {0.5: 3, 0.9: 2}[fraction]  # one case stops at k_max, one below the edge
        assert int(metrics["sharpness_tracked"]) == count == int(new_state["count"])
        got = [float(metrics["sharpness"])] + [float(metrics[f"sharpness_{i}"])
                                               for i in range(2, count + 1)]
        np.testing.assert_allclose(got, evals[:count], rtol=1e-6)
        assert f"sharpness_{count + 1}" not in metrics
        assert float(metrics["sharpness_threshold"]) == pytest.approx(threshold)
        # the state keeps k_max rows: the solved block first, the unused directions after it
        rows = jax.tree.leaves(new_state["vectors"])[0].shape[0]
        assert rows == 3


def test_growth_warm_starts_and_does_not_regrow():
    """A second measurement at the same point starts from the grown block: same count, fewer matvecs."""
    with jax.enable_x64(True):
        ctx, state, data = setup(steps=3)
        # the threshold of the test above (the same compiled solves): λ3 >= 0.5 λ1, so it grows to 3
        probe = growing(ctx, state, threshold=float(top_evals(ctx, state, data)[0]),
                        track_fraction=0.5)
        first, grown = probe.measure(state, probe.init_state, jax.random.key(4))
        second, again = probe.measure(state, grown, jax.random.key(5))
        assert int(first["sharpness_tracked"]) == int(second["sharpness_tracked"]) == 3
        assert int(second["sharpness_matvecs"]) < int(first["sharpness_matvecs"])
        for i in (2, 3):
            assert float(second[f"sharpness_{i}"]) == pytest.approx(float(first[f"sharpness_{i}"]),
                                                                    rel=1e-7)


def test_threshold_comes_from_the_optimizer_state_per_point_of_a_vmapped_batch():
    """Two learning rates stacked as a sweep: each point's threshold is 2/η from its own state; the
    points share one count (the larger one wants), and each point's values match its dense Hessian."""
    with jax.enable_x64(True):
        ctx, state, data = setup(steps=3)
        evals = top_evals(ctx, state, data)
        fraction = 0.5
        # η such that fraction·2/η sits above λ1 (point 0 wants 1 tracked) and between λ1 and λ2
        # (point 1 wants 2)
        lrs = [2.0 * fraction / edge for edge in (1.05 * evals[0], (evals[0] + evals[1]) / 2)]
        # one program per tree (eager, every leaf's stack compiled its own)
        pair = jax.jit(lambda tree: jax.tree.map(lambda a: jnp.stack([a, a]), tree))  # noqa: E731
        probe = growing(ctx, state, track_fraction=fraction)
        probe = probe._replace(data=pair(probe.data))  # a sweep stacks the probe's data too
        states = pair(state)
        states.opt_state.hyperparams["learning_rate"] = jnp.asarray(lrs)
        init = pair(probe.init_state)
        keys = jax.random.split(jax.random.key(4), 2)
        metrics, new = probe.measure_with(jax.jit(jax.vmap(probe.fn)), states, init, keys,
                                          batched=True)
        want = [expected_count(evals, fraction * 2 / lr, 1, 3) for lr in lrs]
        assert want == [1, 2]
        assert list(np.asarray(metrics["sharpness_tracked"])) == [2, 2]
        np.testing.assert_allclose(np.asarray(metrics["sharpness_threshold"]),
                                   [2 / lr for lr in lrs], rtol=1e-12)
        for i in range(2):
            got = [metrics["sharpness"][i], metrics["sharpness_2"][i]]
            np.testing.assert_allclose(np.asarray(got), evals[:2], rtol=1e-6)


def test_precond_probe_grows_against_adams_threshold_on_the_preconditioned_hessian():
    from dynamics.curvature import adaptive_preconditioner

    with jax.enable_x64(True):
        ctx, state, data = setup(optimizer="adam", steps=3)
        probe = PROBES.get("precond_sharpness")(ctx, state.params, jax.random.key(3), every=10,
                                                tol=1e-9, max_iters=2000, method="lobpcg",
                                                track_fraction=1e-6, k_max=2)
        metrics, _ = probe.measure(state, probe.init_state, jax.random.key(4))
        P = np.asarray(ravel_pytree(adaptive_preconditioner(state.opt_state))[0])
        H = dense(ctx.loss, ctx.apply_fn, state.params, data.x_train, data.y_train)
        d = 1 / np.sqrt(P)
        want = np.linalg.eigvalsh(d[:, None] * H * d[None, :])[::-1][:2]
        got = [metrics["precond_sharpness"], metrics["precond_sharpness_2"]]
        np.testing.assert_allclose(np.asarray(got, dtype=float), want, rtol=1e-6)
        # Adam's (2 + 2β1)/((1 − β1)η) at β1 = 0.9, η = 0.1
        assert float(metrics["precond_sharpness_threshold"]) == pytest.approx(3.8 / 0.01, rel=1e-6)


# ----------------------------------------------------------------------------- through the trainer
def small(compose, *overrides):
    return compose("+exp=smoke", "train.batch_size=null", "data.n_train=64", *OFF, *overrides)


def tracked_rows(path):
    return [r for r in read_metrics(path) if "sharpness_tracked" in r]


@pytest.mark.slow  # the vmapped unit test above checks the same per point against dense Hessians
def test_a_learning_rate_sweep_tracks_against_each_points_threshold(compose, tmp_path):
    cfg = small(compose, "train.steps=40", "train.chunk=10", "probes.sharpness.every=10",
                "probes.sharpness.track_fraction=0.05", "probes.sharpness.k_max=3",
                "probes.sharpness.method=lobpcg", "+vmap.lr=[0.1,0.4]")
    run(cfg, tmp_path)
    points = [tracked_rows(tmp_path / "points" / str(i)) for i in (0, 1)]
    for lr, rows in zip((0.1, 0.4), points):
        assert [r["sharpness_threshold"] for r in rows] == pytest.approx([2 / lr] * len(rows))
    # one count per sweep, never shrinking, and the rule held at every measurement
    for a, b in zip(*points):
        assert a["sharpness_tracked"] == b["sharpness_tracked"]
    counts = [r["sharpness_tracked"] for r in points[0]]
    assert counts == sorted(counts) and counts[-1] > 1
    for rows in points:
        for r in rows:
            n = r["sharpness_tracked"]
            values = [r["sharpness"]] + [r[f"sharpness_{i}"] for i in range(2, n + 1)]
            assert values == sorted(values, reverse=True)


def test_a_resumed_growing_run_writes_the_uninterrupted_metrics(compose, resumes_identically):
    args = ("train.steps=30", "train.chunk=5", "checkpoint.every=5", "probes.sharpness.every=5",
            "probes.sharpness.track_fraction=0.05", "probes.sharpness.k_max=2",
            "probes.sharpness.method=lobpcg", "optimizer.lr=0.4")
    whole = resumes_identically(lambda *more: small(compose, *args, *more), at=17)
    grown = [r["step"] for r in tracked_rows(whole) if r["sharpness_tracked"] > 1]
    assert grown and grown[0] < 15  # the block grew before the checkpoint the run resumes from


@pytest.mark.parametrize("overrides, message", [
    (("optimizer.name=adam",), r"probes.sharpness.threshold=None .*optimizer 'adam''s threshold is "
                               r"on precond_sharpness"),
    (("optimizer.name=lion",), r"probes.sharpness.threshold=None .*no known stability threshold"),
    (("probes.sharpness.k=4", "probes.sharpness.k_max=2"), r"probes.sharpness.k_max=2 .*>= "),
    (("probes.sharpness.track_fraction=-1",), r"probes.sharpness.track_fraction=-1"),
])
def test_tracking_without_a_threshold_fails_before_anything_is_built(compose, overrides, message):
    cfg = small(compose, "probes.sharpness.every=5", "probes.sharpness.track_fraction=0.75",
                *overrides)
    with pytest.raises(ConfigError, match=message):
        validate(cfg)


def test_an_explicit_threshold_tracks_for_any_optimizer(compose):
    validate(small(compose, "optimizer.name=lion", "probes.sharpness.every=5",
                   "probes.sharpness.track_fraction=0.75", "probes.sharpness.threshold=10"))
