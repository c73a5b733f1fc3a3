"""The default (unjitted) call is the compiled one: same numbers as the jitted raw path and as dense
float64 oracles, no recompilation on a repeated call, closed-over data hoisted (never stale), and
calls inside a caller's jax.jit / vmap still work."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from dynamics import compiled
from dynamics.curvature import (hessian_trace, preconditioned_sharpness, spectral_density,
                                spherical_sharpness, top_eigenvalue, top_eigenvalues)
from dynamics.ntk import empirical_ntk
from dynamics.ntk.empirical import choose_method


def mlp_apply(p, x):
    h = jnp.tanh(x @ p["w1"] + p["b1"])
    return h @ p["w2"] + p["b2"]


def make_problem(seed=0, n=24, d_in=3, width=6, d_out=2, dtype=np.float64):
    rng = np.random.default_rng(seed)
    params = {"w1": rng.standard_normal((d_in, width)) / np.sqrt(d_in),
              "b1": 0.1 * rng.standard_normal(width),
              "w2": rng.standard_normal((width, d_out)) / np.sqrt(width),
              "b2": 0.1 * rng.standard_normal(d_out)}
    params = jax.tree.map(lambda a: jnp.asarray(a, dtype), params)
    x = jnp.asarray(rng.standard_normal((n, d_in)), dtype)
    y = jnp.asarray(rng.standard_normal((n, d_out)), dtype)
    return params, x, y


def mse(p, x, y):
    return 0.5 * jnp.mean(jnp.sum((mlp_apply(p, x) - y) ** 2, axis=-1))


def _flat(tree):
    """ravel_pytree's vector, on the host (eager, it compiles a reshape per leaf and a concatenate)."""
    return np.concatenate([np.ravel(np.asarray(a)) for a in jax.tree.leaves(tree)])


def dense_hessian(loss_fn, params):
    flat, unravel = ravel_pytree(params)
    return np.asarray(jax.jit(jax.hessian(lambda f: loss_fn(unravel(f))))(flat))


class CompileCounter:
    """Counts XLA backend compilations while active (jax.monitoring events)."""

    def __enter__(self):
        self.count = 0
        jax.monitoring.register_event_duration_secs_listener(self._listen)
        return self

    def _listen(self, event, duration, **_):
        if event == "/jax/core/compile/backend_compile_duration":
            self.count += 1

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self._listen)


@pytest.fixture(autouse=True)
def fresh_cache():
    compiled.cache_clear()
    yield
    compiled.cache_clear()


# ------------------------------------------------------------------ the default call vs the raw path

def _entry_points(x, y, key, precond):
    """(name, default call, raw call under jax.jit) for every self-compiling curvature entry point."""
    loss = lambda p: mse(p, x, y)  # noqa: E731  (closes over x, y: the notebook way)
    return [
        ("top_eigenvalue", lambda p: top_eigenvalue(loss, p, key=key, tol=1e-6, max_iters=300),
         jax.jit(lambda p, x, y: top_eigenvalue.raw(lambda q: mse(q, x, y), p, key=key, tol=1e-6,
                                                    max_iters=300))),
        ("top_eigenvalues", lambda p: top_eigenvalues(loss, p, 2, key=key, tol=1e-6),
         jax.jit(lambda p, x, y: top_eigenvalues.raw(lambda q: mse(q, x, y), p, 2, key=key,
                                                     tol=1e-6))),
        ("hessian_trace", lambda p: hessian_trace(loss, p, key=key, num_samples=12),
         jax.jit(lambda p, x, y: hessian_trace.raw(lambda q: mse(q, x, y), p, key=key,
                                                   num_samples=12))),
        ("spectral_density", lambda p: spectral_density(loss, p, key=key, num_probes=2, order=8,
                                                        num_points=50),
         jax.jit(lambda p, x, y: spectral_density.raw(lambda q: mse(q, x, y), p, key=key,
                                                      num_probes=2, order=8, num_points=50))),
        ("preconditioned_sharpness",
         lambda p: preconditioned_sharpness(loss, p, precond, 1, key=key, tol=1e-6),
         jax.jit(lambda p, x, y: preconditioned_sharpness.raw(lambda q: mse(q, x, y), p, precond, 1,
                                                              key=key, tol=1e-6))),
        ("spherical_sharpness", lambda p: spherical_sharpness(loss, p, key=key, tol=1e-6),
         jax.jit(lambda p, x, y: spherical_sharpness.raw(lambda q: mse(q, x, y), p, key=key,
                                                         tol=1e-6))),
    ]


@pytest.mark.slow  # make test-all; make test keeps the dense float64 oracle test
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_default_calls_equal_jitted_raw_path(dtype, key):
    with jax.enable_x64(dtype == np.float64):
        params, x, y = make_problem(dtype=dtype)
        precond = jax.tree.map(lambda a: 1.0 + jnp.abs(a), params)
        rtol = 2e-5 if dtype == np.float32 else 1e-10
        for name, default, raw in _entry_points(x, y, key, precond):
            got, want = default(params), raw(params, x, y)
            assert jax.tree.structure(got) == jax.tree.structure(want), name
            for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
                assert g.dtype == w.dtype and g.shape == w.shape, name
                np.testing.assert_allclose(np.asarray(g, np.float64), np.asarray(w, np.float64),
                                           rtol=rtol, atol=rtol * 1e-2, err_msg=name)
        assert compiled.cache_info()["misses"] == 6


def test_default_calls_match_dense_float64_oracles(key):
    with jax.enable_x64(True):
        params, x, y = make_problem(seed=1)
        loss = lambda p: mse(p, x, y)  # noqa: E731
        H = dense_hessian(loss, params)
        evals, evecs = np.linalg.eigh(H)
        res = top_eigenvalue(loss, params, key=key, tol=1e-10, max_iters=500)
        # the raw call's result type, traced only (eager, its solve compiled op by op)
        assert isinstance(res, type(jax.eval_shape(
            lambda p: top_eigenvalue.raw(loss, p, key=key, max_iters=2), params)))
        assert bool(res.converged)
        assert abs(float(res.value) - evals[-1]) <= 1e-9 * abs(evals[-1])
        assert abs(abs(float(_flat(res.vector) @ evecs[:, -1])) - 1) < 1e-8
        power = top_eigenvalue(loss, params, key=key, tol=1e-10, max_iters=20000, method="power")
        assert abs(float(power.value) - evals[-1]) <= 1e-8 * abs(evals[-1])
        assert int(res.num_matvecs) < int(power.num_matvecs)  # Lanczos is the cheap default

        top3 = top_eigenvalues(loss, params, 3, key=key, tol=1e-10)
        np.testing.assert_allclose(np.asarray(top3.values), evals[::-1][:3], rtol=1e-9)

        est = hessian_trace(loss, params, key=key, num_samples=400)
        assert abs(float(est.estimate) - np.trace(H)) < 5 * float(est.stderr)

        d = np.abs(_flat(params)) + 0.5
        precond = jax.tree.map(lambda a: jnp.asarray(np.abs(np.asarray(a)) + 0.5), params)
        S = np.diag(d ** -0.5) @ H @ np.diag(d ** -0.5)
        pres = preconditioned_sharpness(loss, params, precond, 1, key=key, tol=1e-10)
        assert abs(float(pres.values[0]) - np.linalg.eigvalsh(S)[-1]) < 1e-9 * np.abs(S).max()

        norm = float(np.linalg.norm(_flat(params)))
        pbar = jax.tree.map(lambda a: jnp.asarray(np.asarray(a) / norm), params)
        sph = spherical_sharpness(loss, params, key=key, tol=1e-10)
        want = np.linalg.eigvalsh(dense_hessian(loss, pbar))[-1]
        assert abs(float(sph.value) - want) <= 1e-9 * abs(want)
        assert abs(float(sph.norm) - norm) < 1e-12

        grid, dens = spectral_density(loss, params, key=key, num_probes=4, order=20)
        grid, dens = np.asarray(grid), np.asarray(dens)
        integral = float(np.sum(dens) * (grid[1] - grid[0]))
        assert abs(integral - 1) < 1e-3


def test_empirical_ntk_default_matches_explicit_jacobian_f64():
    with jax.enable_x64(True):
        params, x, _ = make_problem(seed=2, n=7, d_out=3)
        x2 = x[:4] + 0.5
        flat, unravel = ravel_pytree(params)
        jac = jax.jit(jax.jacobian(lambda f, x: mlp_apply(unravel(f), x)))
        J1, J2 = jac(flat, x), jac(flat, x2)  # (N1, O, P), (N2, O, P)
        want = np.einsum("iap,jbp->ijab", J1, J2)
        for method in ("auto", "jacobian", "ntvp"):
            k = empirical_ntk(mlp_apply, params, x, x2, method=method)
            np.testing.assert_allclose(np.asarray(k), want, rtol=1e-10, atol=1e-12)
        k11 = empirical_ntk(mlp_apply, params, x, trace_axes=(-1,))
        want11 = np.einsum("iap,jap->ij", J1, J1) / 3
        np.testing.assert_allclose(np.asarray(k11), want11, rtol=1e-10, atol=1e-12)
        raw = jax.jit(lambda p, a, b: empirical_ntk.raw(mlp_apply, p, a, b))(params, x, x2)
        np.testing.assert_allclose(np.asarray(raw), want, rtol=1e-10, atol=1e-12)


def test_choose_method_by_shapes():
    params, x, _ = make_problem(seed=3, n=50, d_in=20, width=256, d_out=10, dtype=np.float32)
    assert choose_method(mlp_apply, params, x) == "structured"  # MLP: per-layer Gram products
    params1, x1, _ = make_problem(seed=3, n=50, d_in=20, width=256, d_out=1, dtype=np.float32)
    assert choose_method(mlp_apply, params1, x1) == "structured"  # one logit too

    def conv_apply(p, x):  # weight sharing: the forward pass costs far more than P
        h = jax.lax.conv_general_dilated(x, p["k"], (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.mean(jnp.tanh(h), axis=(1, 2)) @ p["w"]

    cp = {"k": jnp.ones((3, 3, 3, 16)) * 0.1, "w": jnp.ones((16, 2)) * 0.1}
    # the conv kernel falls back to the Jacobian contraction, the dense head is structured
    assert choose_method(conv_apply, cp, jnp.ones((8, 32, 32, 3))) == "structured"


# ---------------------------------------------------------------------- caching and no recompilation

def test_second_call_compiles_nothing_and_traces_the_loss_once(key):
    params, x, y = make_problem(dtype=np.float32)
    traces = []

    def loss(p):
        traces.append(1)
        return mse(p, x, y)

    first = top_eigenvalue(loss, params, key=key)
    assert len(traces) == 1  # the solver evaluates the hoisted jaxpr, not the Python function
    with CompileCounter() as counter:
        again = top_eigenvalue(loss, params, key=key)
        fresh_lambda = top_eigenvalue(lambda p: mse(p, x, y), params, key=key)  # same computation
        k = empirical_ntk(mlp_apply, params, x)
        k_again = empirical_ntk(mlp_apply, params, x)
    assert len(traces) == 2
    assert float(again.value) == float(first.value) == float(fresh_lambda.value)
    np.testing.assert_array_equal(np.asarray(k), np.asarray(k_again))
    assert counter.count == 1  # only the eNTK's first call compiled
    info = compiled.cache_info()
    assert info["hits"] == 3 and info["misses"] == 2 and info["raw_calls"] == 0

    with CompileCounter() as counter:  # a new tolerance is a traced argument, not a recompile
        top_eigenvalue(loss, params, key=key, tol=1e-2)
        top_eigenvalue(loss, params, key=jax.random.key(5))
    assert counter.count == 0


def test_changed_closed_over_data_gives_the_new_answer(key):
    with jax.enable_x64(True):
        params, x, y = make_problem(seed=4)
        scale = 1.0

        def loss(p):  # closes over x, y and a Python float, all rebound below
            return scale * mse(p, x, y)

        a = top_eigenvalue(loss, params, key=key, tol=1e-10)
        want_a = np.linalg.eigvalsh(dense_hessian(loss, params))[-1]
        x = 2.0 * x  # same function object, new data
        b = top_eigenvalue(loss, params, key=key, tol=1e-10)
        want_b = np.linalg.eigvalsh(dense_hessian(loss, params))[-1]
        scale = 3.0  # a Python scalar is a literal in the jaxpr: a new compile, not a stale one
        c = top_eigenvalue(loss, params, key=key, tol=1e-10)
        assert abs(want_b - want_a) > 0.1 * abs(want_a)
        assert float(a.value) == pytest.approx(want_a, rel=1e-9)
        assert float(b.value) == pytest.approx(want_b, rel=1e-9)
        assert float(c.value) == pytest.approx(3 * want_b, rel=1e-9)
        assert compiled.cache_info()["misses"] == 2  # data change: a hit with the new arrays

        # the same for the eNTK: an apply function closing over part of the parameters
        frozen = {"w2": params["w2"], "b2": params["b2"]}
        apply = lambda p, xs: mlp_apply({**p, **frozen}, xs)  # noqa: E731
        trainable = {"w1": params["w1"], "b1": params["b1"]}
        k1 = empirical_ntk(apply, trainable, x)
        frozen = {"w2": 2 * params["w2"], "b2": params["b2"]}
        k2 = empirical_ntk(apply, trainable, x)
        want2 = empirical_ntk.raw(apply, trainable, x, method="jacobian")
        np.testing.assert_allclose(np.asarray(k2), np.asarray(want2), rtol=1e-10)
        assert not np.allclose(np.asarray(k1), np.asarray(k2))


def test_calls_inside_user_jit_and_vmap(key):
    params, x, y = make_problem(dtype=np.float32)

    @jax.jit
    def sharp(p, x, y):
        return top_eigenvalue(lambda q: mse(q, x, y), p, key=key, tol=1e-5).value

    eager = top_eigenvalue(lambda q: mse(q, x, y), params, key=key, tol=1e-5).value
    assert float(sharp(params, x, y)) == pytest.approx(float(eager), rel=1e-5)
    # constants captured from an enclosing jit (tracers in the closure) take the raw path too
    closed = jax.jit(lambda x: top_eigenvalue(lambda q: mse(q, x, y), params, key=key,
                                              tol=1e-5).value)
    assert float(closed(x)) == pytest.approx(float(eager), rel=1e-5)
    scales = jnp.array([1.0, 2.0])
    batched = jax.vmap(lambda s: hessian_trace(lambda q: s * mse(q, x, y), params, key=key,
                                               num_samples=4).estimate)(scales)
    single = hessian_trace(lambda q: mse(q, x, y), params, key=key, num_samples=4).estimate
    np.testing.assert_allclose(np.asarray(batched), [float(single), 2 * float(single)], rtol=1e-5)
    k_jit = jax.jit(lambda p, a: empirical_ntk(mlp_apply, p, a))(params, x)
    np.testing.assert_allclose(np.asarray(k_jit), np.asarray(empirical_ntk(mlp_apply, params, x)),
                               rtol=1e-5, atol=1e-6)
    assert compiled.cache_info()["raw_calls"] >= 3


def test_cache_is_bounded(monkeypatch, key):
    monkeypatch.setattr(compiled, "MAX_ENTRIES", 3)
    params = jnp.ones(4)
    for i in range(6):  # six different computations (the literal differs)
        top_eigenvalue(lambda p, c=float(i + 1): c * jnp.sum(p ** 2), params, key=key,
                       method="power")
    assert compiled.cache_info()["size"] == 3
