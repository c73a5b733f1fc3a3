"""Curvature toolkit vs dense oracles: top-k eigenpairs, traces, SLQ, preconditioned and spherical sharpness.

Every solver call runs inside ``jax.jit`` with params and data passed as arguments. Oracles are dense
``jax.hessian`` + ``eigh`` in float64, closed forms, and optax's own updates.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from dynamics.curvature import (adam_threshold, adaptive_preconditioner, effective_lr,
                                find_adaptive_state, gd_threshold, heavy_ball_threshold,
                                hessian_trace, nesterov_threshold, preconditioned_sharpness,
                                slq_nodes_weights, spectral_density, spherical_sharpness,
                                top_eigenvalues)
from dynamics.curvature.hvp import flat_hvp

METHODS = ["lanczos", "power", "lobpcg"]


# ----------------------------------------------------------------------------------- problems


def mlp(p, x):
    return jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]


def mse(p, x, y):
    return 0.5 * jnp.mean(jnp.sum((mlp(p, x) - y) ** 2, axis=-1))


def make_mlp(key, d_in=3, width=6, d_out=2, n=10):
    """Tiny tanh MLP and data in the current default float dtype (38 params by default)."""
    k = jax.random.split(key, 4)
    p = {"w1": jax.random.normal(k[0], (d_in, width)) / np.sqrt(d_in), "b1": 0.1 * jnp.ones(width),
         "w2": jax.random.normal(k[1], (width, d_out)) / np.sqrt(width), "b2": jnp.zeros(d_out)}
    return p, jax.random.normal(k[2], (n, d_in)), jax.random.normal(k[3], (n, d_out))


def dense_hessian(loss_fn, params):
    flat, unravel = ravel_pytree(params)
    return np.asarray(jax.jit(jax.hessian(lambda v: loss_fn(unravel(v))))(flat))


def quad(q, A):
    return 0.5 * q @ A @ q


def known_spectrum(n, top, rest, seed=0):
    """``A = Q diag(λ) Qᵀ`` with a random orthogonal ``Q``; returns ``(A, λ sorted descending)``."""
    rng = np.random.default_rng(seed)
    lam = np.concatenate([top, rest])
    Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return jnp.asarray(Q @ np.diag(lam) @ Q.T), np.sort(lam)[::-1]


@partial(jax.jit, static_argnames=("k", "method", "max_iters"))
def mlp_topk(params, x, y, key, init=None, *, k, method, tol, max_iters=4000):
    return top_eigenvalues(lambda p: mse(p, x, y), params, k, key=key, method=method, tol=tol,
                           max_iters=max_iters, init=init)


@partial(jax.jit, static_argnames=("k", "method"))
def quad_topk(params, A, key, *, k, method):
    return top_eigenvalues(lambda q: quad(q, A), params, k, key=key, method=method, tol=1e-10,
                           max_iters=3000)


# ----------------------------------------------------------------------------------- top-k


@pytest.mark.parametrize("method", METHODS)
def test_top_k_matches_dense_eigh_on_tiny_mlp_f64(method, key):
    with jax.enable_x64(True):
        params, x, y = make_mlp(jax.random.key(1))
        H = dense_hessian(lambda p: mse(p, x, y), params)
        lam, U = np.linalg.eigh(H)
        lam, U = lam[::-1][:3], U[:, ::-1][:, :3]
        res = mlp_topk(params, x, y, key, k=3, method=method, tol=1e-10)
        assert res.values.dtype == jnp.float64
        assert bool(res.converged)
        np.testing.assert_allclose(res.values, lam, rtol=1e-6)
        V = jax.vmap(lambda t: ravel_pytree(t)[0])(res.vectors)  # stacked pytree -> (k, n)
        assert V.shape == (3, H.shape[0])
        np.testing.assert_allclose(np.abs(np.sum(np.asarray(V) * U.T, axis=1)), 1.0, atol=1e-6)
        # The reported residuals are the true ones (relative to max |λ|), and below tol.
        true_res = np.linalg.norm(H @ V.T - V.T * res.values, axis=0) / np.max(np.abs(res.values))
        np.testing.assert_allclose(res.residuals, true_res, atol=1e-12)
        assert np.all(true_res <= 1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_top_k_is_largest_algebraic_not_largest_magnitude(method, key):
    with jax.enable_x64(True):
        n = 30
        A, lam = known_spectrum(n, top=[7.0, 5.0, 3.0, -10.0], rest=np.linspace(-1.0, 1.0, n - 4))
        res = quad_topk(jnp.ones(n), A, key, k=3, method=method)
        assert bool(res.converged)
        np.testing.assert_allclose(res.values, [7.0, 5.0, 3.0], rtol=1e-9)


def test_lanczos_converges_on_clustered_spectrum_with_restarts(key):
    with jax.enable_x64(True):
        n = 30  # a 20-vector basis: separating 1.0 / 0.99 / 0.98 from 0.95 takes restarts
        A, lam = known_spectrum(n, top=[1.0, 0.99, 0.98, -1.0], rest=np.linspace(-0.5, 0.95, n - 4))
        res = quad_topk(jnp.ones(n), A, key, k=3, method="lanczos")
        assert bool(res.converged) and int(res.num_matvecs) > 20
        np.testing.assert_allclose(res.values, [1.0, 0.99, 0.98], rtol=1e-9)


def test_f32_warm_start_is_cheap_and_accurate(key):
    params, x, y = make_mlp(jax.random.key(2), d_in=8, width=16, d_out=3, n=64)
    assert ravel_pytree(params)[0].dtype == jnp.float32
    # A random stacked init is a cold start (and shares the compilation with the warm call).
    rand = jax.tree.map(lambda a: jax.random.normal(key, (2, *a.shape)), params)
    cold = mlp_topk(params, x, y, key, rand, k=2, method="lanczos", tol=1e-5)
    step = jax.jit(lambda p, x, y: jax.tree.map(lambda a, g: a - 0.01 * g, p,
                                                jax.grad(mse)(p, x, y)))
    params2 = step(params, x, y)
    cold2 = mlp_topk(params2, x, y, key, rand, k=2, method="lanczos", tol=1e-5)
    warm2 = mlp_topk(params2, x, y, key, cold.vectors, k=2, method="lanczos", tol=1e-5)
    assert bool(cold2.converged) and bool(warm2.converged)
    assert cold.values.dtype == jnp.float32
    assert int(warm2.num_matvecs) <= 0.6 * int(cold2.num_matvecs)
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params2)
        x64, y64 = jnp.asarray(x, jnp.float64), jnp.asarray(y, jnp.float64)
        lam = np.linalg.eigvalsh(dense_hessian(lambda p: mse(p, x64, y64), p64))[::-1][:2]
    np.testing.assert_allclose(warm2.values, lam, rtol=1e-4)
    np.testing.assert_allclose(cold2.values, lam, rtol=1e-4)


def test_init_single_pytree_and_exact_warm_start(key):
    with jax.enable_x64(True):
        params, x, y = make_mlp(jax.random.key(1))
        lam = np.linalg.eigvalsh(dense_hessian(lambda p: mse(p, x, y), params))[::-1][:3]
        first = mlp_topk(params, x, y, key, k=3, method="lanczos", tol=1e-10)
        one = jax.tree.map(lambda v: v[0], first.vectors)  # a single, unstacked vector
        res = mlp_topk(params, x, y, key, one, k=3, method="lanczos", tol=1e-10)
        np.testing.assert_allclose(res.values, lam, rtol=1e-8)
        # Warm start from the exact eigenvectors: the Krylov space is invariant after k matvecs.
        again = mlp_topk(params, x, y, key, first.vectors, k=3, method="lanczos", tol=1e-8)
        assert bool(again.converged) and int(again.num_matvecs) <= 4
        np.testing.assert_allclose(again.values, lam, rtol=1e-8)


def test_lobpcg_rejects_large_k(key):
    with pytest.raises(ValueError, match="5k < n"):
        top_eigenvalues(lambda q: jnp.sum(q ** 2), jnp.ones(10), 2, key=key, method="lobpcg")
    with pytest.raises(ValueError, match="valid"):
        top_eigenvalues(lambda q: jnp.sum(q ** 2), jnp.ones(10), 1, key=key, method="arpack")


# ----------------------------------------------------------------------------------- traces


@partial(jax.jit, static_argnames=("num_samples", "method"))
def mlp_trace(params, x, y, key, *, num_samples, method):
    return hessian_trace(lambda p: mse(p, x, y), params, key=key, num_samples=num_samples,
                         method=method, batch_size=50)


@pytest.mark.parametrize(("method", "num"), [("hutchinson", 300), ("hutchpp", 30)])
def test_trace_estimators_vs_exact_trace(method, num, key):
    with jax.enable_x64(True):
        params, x, y = make_mlp(jax.random.key(1))  # 38 parameters: Hutch++ sketches 10 of them
        H = dense_hessian(lambda p: mse(p, x, y), params)
        est = mlp_trace(params, x, y, key, num_samples=num, method=method)
        assert int(est.num_matvecs) == num and float(est.stderr) > 0
        assert abs(float(est.estimate) - np.trace(H)) <= 4 * float(est.stderr)
        if method == "hutchinson":
            # The standard error matches the Rademacher variance 2(‖H‖_F² − Σ H_ii²).
            sd = np.sqrt(2 * (np.sum(H ** 2) - np.sum(np.diag(H) ** 2)))
            np.testing.assert_allclose(float(est.stderr) * np.sqrt(num), sd, rtol=0.25)


def test_hutchpp_beats_hutchinson_on_decaying_spectrum(key):
    with jax.enable_x64(True):
        n = 60
        A, lam = known_spectrum(n, top=100.0 * 0.5 ** np.arange(10), rest=0.01 * np.ones(n - 10))
        run = jax.jit(lambda p, A, key: (
            hessian_trace(lambda q: quad(q, A), p, key=key, num_samples=30),
            hessian_trace(lambda q: quad(q, A), p, key=key, num_samples=30, method="hutchpp")))
        hutch, hpp = run(jnp.ones(n), A, key)
        for est in (hutch, hpp):
            assert abs(float(est.estimate) - lam.sum()) <= 4 * float(est.stderr)
        assert float(hpp.stderr) < 0.05 * float(hutch.stderr)


# ----------------------------------------------------------------------------------- SLQ


def test_spectral_density_integrates_to_one_and_mean_is_trace_over_n(key):
    with jax.enable_x64(True):
        params, x, y = make_mlp(jax.random.key(1))
        H = dense_hessian(lambda p: mse(p, x, y), params)
        n = H.shape[0]
        dens = jax.jit(lambda p, x, y, key: spectral_density(
            lambda q: mse(q, x, y), p, key=key, num_probes=40, order=20, num_points=2000))
        grid, rho = dens(params, x, y, key)
        assert grid.shape == rho.shape == (2000,)
        assert np.all(np.asarray(rho) >= 0)
        np.testing.assert_allclose(np.trapezoid(rho, grid), 1.0, atol=1e-4)
        mean = np.trapezoid(grid * rho, grid)
        # Normalised Rademacher probes: per-probe sd of zᵀHz/n is √(2(‖H‖_F² − ΣH_ii²))/n.
        sd = np.sqrt(2 * (np.sum(H ** 2) - np.sum(np.diag(H) ** 2))) / n
        assert abs(mean - np.trace(H) / n) <= 4 * sd / np.sqrt(40)


def test_slq_full_order_nodes_reach_the_extreme_eigenvalues(key):
    with jax.enable_x64(True):
        params, x, y = make_mlp(jax.random.key(1))
        H = dense_hessian(lambda p: mse(p, x, y), params)
        lam = np.linalg.eigvalsh(H)
        n = H.shape[0]

        @jax.jit
        def nodes_weights(p, x, y, key):
            matvec, flat, _ = flat_hvp(lambda q: mse(q, x, y), p)
            return slq_nodes_weights(matvec, n, flat.dtype, key=key, num_probes=3, order=n)

        nodes, weights = nodes_weights(params, x, y, key)
        np.testing.assert_allclose(np.sum(weights, axis=1), 1.0, atol=1e-12)
        np.testing.assert_allclose(np.max(nodes, axis=1), lam[-1], rtol=1e-8)
        np.testing.assert_allclose(np.min(nodes, axis=1), lam[0], rtol=1e-8)
        # Gauss quadrature from Rademacher/√n probes reproduces tr(H²)/n on average: check the
        # weighted second moment against the dense value within the sampling spread.
        m2 = np.mean(np.sum(weights * nodes ** 2, axis=1))
        np.testing.assert_allclose(m2, np.trace(H @ H) / n, rtol=0.5)


# ----------------------------------------------------------------------------------- preconditioned


def run_optimizer(opt, params, x, y, steps):
    """``steps`` optax updates; returns the final state, the last update and the last gradient."""
    @jax.jit
    def step(params, state, x, y):
        g = jax.grad(mse)(params, x, y)
        u, state = opt.update(g, state, params)
        return optax.apply_updates(params, u), state, u, g

    state = opt.init(params)
    for _ in range(steps):
        params, state, u, g = step(params, state, x, y)
    return params, state, u, g


@jax.jit
def precond_top2(params, x, y, precond, key):
    return preconditioned_sharpness(lambda p: mse(p, x, y), params, precond, 2, key=key, tol=1e-10)


def test_adam_preconditioner_from_optax_update_and_dense_sharpness(key):
    with jax.enable_x64(True):
        params, x, y = make_mlp(jax.random.key(1))
        lr, b1, b2, eps, steps = 0.01, 0.9, 0.99, 1e-8, 5
        params, state, u, _ = run_optimizer(optax.adam(lr, b1=b1, b2=b2, eps=eps), params, x, y,
                                            steps)
        adam_state, hp = find_adaptive_state(state)
        assert hp == {}
        # Oracle from optax's own last update, u = -lr m/P with m the raw EMA: P = -lr m / u.
        oracle = jax.tree.map(lambda m, v: -lr * m / v, adam_state.mu, u)
        P = jax.jit(lambda s: adaptive_preconditioner(s, b1=b1, b2=b2, eps=eps))(state)
        for a, b in zip(jax.tree.leaves(P), jax.tree.leaves(oracle)):
            np.testing.assert_allclose(a, b, rtol=1e-9)
        P2 = adaptive_preconditioner(state, b1=b1, b2=b2, eps=eps, convention="init2winit")
        for a, b in zip(jax.tree.leaves(P2), jax.tree.leaves(oracle)):
            np.testing.assert_allclose(a, b / (1 - b1 ** steps), rtol=1e-9)
        # Dense P^{-1/2} H P^{-1/2}.
        H = dense_hessian(lambda p: mse(p, x, y), params)
        d = 1 / np.sqrt(np.asarray(ravel_pytree(P)[0]))
        lam = np.linalg.eigvalsh(d[:, None] * H * d[None, :])[::-1][:2]
        res = precond_top2(params, x, y, P, key)
        assert bool(res.converged)
        np.testing.assert_allclose(res.values, lam, rtol=1e-6)
        # Same spectrum as the non-symmetric P^{-1} H.
        ev = np.sort(np.linalg.eigvals(H / np.asarray(ravel_pytree(P)[0])[:, None]).real)[::-1]
        np.testing.assert_allclose(res.values, ev[:2], rtol=1e-6)


def test_preconditioner_found_under_chain_and_inject_hyperparams():
    with jax.enable_x64(True):
        params, x, y = make_mlp(jax.random.key(1))
        lr, b1, b2 = 0.01, 0.8, 0.95
        opt = optax.chain(optax.clip_by_global_norm(10.0),
                          optax.inject_hyperparams(optax.adamw)(learning_rate=lr, b1=b1, b2=b2,
                                                                weight_decay=0.0))
        _, state, u, _ = run_optimizer(opt, params, x, y, 3)
        adam_state, hp = find_adaptive_state(state)
        assert isinstance(adam_state, optax.ScaleByAdamState)
        np.testing.assert_allclose(hp["b1"], b1)
        P = adaptive_preconditioner(state)  # b1, b2, eps read from the injected hyperparams
        oracle = jax.tree.map(lambda m, v: -lr * m / v, adam_state.mu, u)
        for a, b in zip(jax.tree.leaves(P), jax.tree.leaves(oracle)):
            np.testing.assert_allclose(a, b, rtol=1e-9)


@pytest.mark.parametrize("bias_correction", [False, True])
def test_rmsprop_preconditioner_from_optax_update(bias_correction):
    with jax.enable_x64(True):
        params, x, y = make_mlp(jax.random.key(1))
        lr = 0.01
        opt = optax.rmsprop(lr, decay=0.9, eps=1e-6, bias_correction=bias_correction)
        _, state, u, g = run_optimizer(opt, params, x, y, 4)
        P = adaptive_preconditioner(state, eps_root=1e-6)
        oracle = jax.tree.map(lambda gi, ui: -lr * gi / ui, g, u)
        for a, b in zip(jax.tree.leaves(P), jax.tree.leaves(oracle)):
            np.testing.assert_allclose(a, b, rtol=1e-9)


def test_no_adaptive_state_raises():
    state = optax.sgd(0.1, momentum=0.9).init({"w": jnp.ones(3)})
    with pytest.raises(ValueError, match="adam"):
        find_adaptive_state(state)


# ----------------------------------------------------------------------------------- thresholds


def test_threshold_closed_forms():
    assert gd_threshold(0.01) == pytest.approx(200.0)
    assert heavy_ball_threshold(0.01, 0.9) == pytest.approx(380.0)
    assert adam_threshold(0.01, 0.9) == pytest.approx(3800.0)  # 38/η
    assert adam_threshold(0.01, 0.0) == pytest.approx(gd_threshold(0.01))
    assert nesterov_threshold(0.01, 0.0) == pytest.approx(gd_threshold(0.01))
    assert nesterov_threshold(0.1, 0.9) == pytest.approx(3.8 / 2.8 / 0.1)


def _final_abs(opt, curvature, steps=3000):
    """|w| after ``steps`` updates of ``opt`` on L(w) = ½ λ w² from w = 1."""
    def body(carry, _):
        w, s = carry
        u, s = opt.update(curvature * w, s, w)
        return (w + u, s), None

    (w, _), _ = jax.lax.scan(body, (jnp.ones(()), opt.init(jnp.ones(()))), None, length=steps)
    return jnp.abs(w)


@pytest.mark.parametrize("name", ["gd", "heavy_ball", "nesterov", "adam_frozen_p"])
def test_thresholds_on_simulated_quadratics(name):
    lr, beta, P = 0.1, 0.9, 3.0
    opt, thr = {
        "gd": (optax.sgd(lr), gd_threshold(lr)),
        "heavy_ball": (optax.sgd(lr, momentum=beta), heavy_ball_threshold(lr, beta)),
        "nesterov": (optax.sgd(lr, momentum=beta, nesterov=True), nesterov_threshold(lr, beta)),
        # Adam with a frozen preconditioner P: EMA momentum, step -lr m / P; threshold on λ/P.
        "adam_frozen_p": (optax.chain(optax.ema(beta, debias=False), optax.scale(-lr / P)),
                          adam_threshold(lr, beta) * P),
    }[name]
    final = jax.jit(lambda lam: _final_abs(opt, lam))
    assert float(final(0.98 * thr)) < 1e-3
    assert not float(final(1.02 * thr)) <= 1e3  # diverged (possibly to inf/nan)


# ----------------------------------------------------------------------------------- spherical


def scale_invariant_loss(p, x, y):
    """A linear model on the direction of W only (plus a free bias): L(cW, b) = L(W, b)."""
    w = p["w"] / jnp.linalg.norm(p["w"])
    return 0.5 * jnp.mean(jnp.sum((jnp.tanh(x @ w) + p["b"] - y) ** 2, axis=-1))


@jax.jit
def sph(params, x, y, key):
    """Spherical sharpness with the bias left out of the normalisation, without / with projection."""
    mask = {"w": True, "b": False}
    return [spherical_sharpness(lambda p: scale_invariant_loss(p, x, y), params, 1, key=key,
                                mask=mask, project=project, tol=1e-10) for project in (False, True)]


def test_spherical_sharpness_vs_dense_hessian_at_unit_norm(key):
    with jax.enable_x64(True):
        k = jax.random.split(jax.random.key(3), 3)
        params = {"w": 3.0 * jax.random.normal(k[0], (4, 3)), "b": 0.1 * jnp.ones(3)}
        x, y = jax.random.normal(k[1], (12, 4)), jax.random.normal(k[2], (12, 3))
        loss = lambda p: scale_invariant_loss(p, x, y)  # noqa: E731
        norm = float(jnp.linalg.norm(params["w"]))
        pbar = {"w": params["w"] / norm, "b": params["b"]}
        H_bar = dense_hessian(loss, pbar)
        res, res_p = sph(params, x, y, key)
        np.testing.assert_allclose(float(res.norm), norm, rtol=1e-12)
        np.testing.assert_allclose(float(res.value), np.linalg.eigvalsh(H_bar)[-1], rtol=1e-6)
        # Tangent-space version: dense projector removing the radial (w) direction.
        u = np.asarray(ravel_pytree({"w": pbar["w"], "b": jnp.zeros(3)})[0])
        Pr = np.eye(u.size) - np.outer(u, u)
        np.testing.assert_allclose(float(res_p.value), np.linalg.eigvalsh(Pr @ H_bar @ Pr)[-1],
                                   rtol=1e-6)


def test_spherical_scaling_identity_and_effective_lr(key):
    with jax.enable_x64(True):
        k = jax.random.split(jax.random.key(4), 3)
        params = {"w": 2.5 * jax.random.normal(k[0], (4, 3)), "b": jnp.zeros(3)}
        x, y = jax.random.normal(k[1], (12, 4)), jax.random.normal(k[2], (12, 3))
        # Fully scale-invariant: drop the bias from the loss so that every parameter is invariant.
        w_only = {"w": params["w"]}
        loss = lambda p: scale_invariant_loss({"w": p["w"], "b": 0.0}, x, y)  # noqa: E731
        run = jax.jit(lambda p, x, y, key: spherical_sharpness(
            lambda q: scale_invariant_loss({"w": q["w"], "b": 0.0}, x, y), p, key=key, tol=1e-10))
        res = run(w_only, x, y, key)
        norm2 = float(jnp.sum(params["w"] ** 2))
        lam_theta = np.linalg.eigvalsh(dense_hessian(loss, w_only))[-1]
        # ∇²L(θ) = ∇²L(θ/‖θ‖)/‖θ‖², so sharpness at θ = spherical sharpness · η_eff/η.
        np.testing.assert_allclose(lam_theta, float(res.value) / norm2, rtol=1e-6)
        np.testing.assert_allclose(float(effective_lr(0.1, w_only)), 0.1 / norm2, rtol=1e-12)
