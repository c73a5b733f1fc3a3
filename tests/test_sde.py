"""SDE simulators against closed forms (f64), Itô vs Stratonovich, weak error vs η, noise models."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dynamics.errors import ConfigError
from dynamics.sde import (adam_sde, adaptive_constants, adaptive_stationary_loss,
                          adaptive_stationary_variance, diagonal_noise, euler_maruyama,
                          minibatch_noise, nqm_oracle, rmsprop_sde, rmsprop_sde_moments,
                          run_optimizer, sample_paths, sgd_moments, sgd_sde, sgd_sde_moments,
                          sgd_sde_stationary_variance, sgd_stationary_variance)

H = np.array([1.0, 0.25])
S = np.array([1.0, 4.0])
THETA0 = np.array([2.0, -2.0])


def _within(got, want, se, n_se=5.0):
    got, want, se = (np.asarray(x, np.float64) for x in (got, want, se))
    assert np.all(np.abs(got - want) <= n_se * se), (got, want, se)


@pytest.mark.usefixtures("xla_optimized")  # 20M path-steps: -O0 code runs ~3x slower
def test_sgd_sde_matches_ornstein_uhlenbeck(key):
    """Mean and variance at T = 2 vs the OU closed form; 20k paths, dt = 2e-3 (EM bias ≪ SE)."""
    with jax.enable_x64(True):
        lr, t_end, dt, n = 0.1, 2.0, 2e-3, 20_000
        h = jnp.asarray(H)
        paths = sample_paths(lambda k: sgd_sde(
            lambda th: h * th, diagonal_noise(jnp.asarray(S)), jnp.asarray(THETA0), lr=lr, dt=dt,
            num_steps=1000, key=k, save_every=500), key, n)
        assert paths.y.dtype == jnp.float64 and paths.y.shape == (n, 3, 2)
        assert np.allclose(paths.t[0], [0.0, 1.0, 2.0])
        x = np.asarray(paths.y[:, -1])
        mean, var = sgd_sde_moments(lr, H, S, THETA0, t_end)
        _within(x.mean(0), mean, np.sqrt(var / n))
        _within(x.var(0), var, var * math.sqrt(2 / n))


@pytest.mark.usefixtures("xla_optimized")  # 30M path-steps: -O0 code runs ~3x slower
def test_rmsprop_sde_frozen_u_matches_ou(key):
    """With u0 = diag Σ (constant Σ) u stays put and θ is OU with rate h/p, p = σ0√s + ε0."""
    with jax.enable_x64(True):
        sigma0, eps0, c2, t_end, dt, n = 1.0, 0.1, 1.0, 3.0, 2e-3, 20_000
        h = jnp.asarray(H)
        paths = sample_paths(lambda k: rmsprop_sde(
            lambda th: h * th, diagonal_noise(jnp.asarray(S)), jnp.asarray(THETA0),
            sigma0=sigma0, eps0=eps0, c2=c2, dt=dt, num_steps=1500, key=k, u0=jnp.asarray(S),
            save_every=1500), key, n)
        assert np.allclose(paths.y.u[:, -1], S)
        x = np.asarray(paths.y.theta[:, -1])
        mean, var = rmsprop_sde_moments(sigma0, eps0, H, S, THETA0, t_end)
        _within(x.mean(0), mean, np.sqrt(var / n))
        _within(x.var(0), var, var * math.sqrt(2 / n))


def test_discrete_sgd_stationary_variance(key):
    """optax SGD on the NQM: stationary Var θ = ηs/(h(2 − ηh)), not the SDE's ηs/(2h).

    ηh = (0.25, 1): the two differ by 14 % and 100 %. Averaged over 2000 paths × 300 late steps;
    tolerance 4 %.
    """
    with jax.enable_x64(True):
        lr, h, s = 0.25, np.array([1.0, 4.0]), np.array([1.0, 1.0])
        paths = sample_paths(lambda k: run_optimizer(
            optax.sgd(lr), nqm_oracle(h, s), jnp.zeros(2), num_steps=400, key=k,
            observe=lambda th: th**2), key, 2000)
        got = np.asarray(paths.y[:, 100:]).mean((0, 1))
        want = sgd_stationary_variance(lr, h, s)
        assert np.allclose(got, want, rtol=0.04), (got, want)
        assert np.all(np.abs(got / sgd_sde_stationary_variance(lr, h, s) - 1) > 0.1)


def test_sgd_weak_error_shrinks_with_lr(key):
    """Discrete SGD vs the SGD SDE at T = 4 (h = s = 1, θ0 = 0): the relative weak error of E θ²
    is O(η) (its absolute error is O(η²) since the SDE's diffusion is itself ∝ η).

    The Monte Carlo estimate must match the exact discrete moments (5 SE, 1e5 paths) and the
    relative error must halve (ratio in [1.6, 2.6]) as η halves.
    """
    with jax.enable_x64(True):
        n, errs = 100_000, []
        for lr in (0.4, 0.2, 0.1):
            k = int(round(4.0 / lr))
            paths = sample_paths(lambda key_, lr=lr, k=k: run_optimizer(
                optax.sgd(lr), nqm_oracle(jnp.ones(1), jnp.ones(1)), jnp.zeros(1), num_steps=k,
                key=key_, save_every=k), jax.random.fold_in(key, k), n)
            x2 = np.asarray(paths.y[:, -1, 0]) ** 2
            m, v = sgd_moments(lr, 1.0, 1.0, 0.0, k)
            _within(x2.mean(), m**2 + v, x2.std() / math.sqrt(n))
            m, v = sgd_sde_moments(lr, 1.0, 1.0, 0.0, 4.0)
            errs.append(abs(x2.mean() / float(m**2 + v) - 1))
        assert 1.6 < errs[0] / errs[1] < 2.6 and 1.6 < errs[1] / errs[2] < 2.6, errs


def _ito_or_stratonovich(key, heun: bool):
    """E log X_1 for dX = |X| dW, X0 = 1: Itô −1/2, Stratonovich 0 (geometric Brownian motion)."""
    noise = diagonal_noise(lambda th: th**2, dim=1)
    zero = lambda th: jnp.zeros_like(th)  # noqa: E731
    if not heun:
        sim = lambda k: sgd_sde(zero, noise, jnp.ones(1), lr=1.0, dt=0.01, num_steps=100,  # noqa
                                key=k, save_every=100)
    else:
        def diffusion(t, y, dw):
            return noise.apply(y, dw)[0]

        def heun_path(k):  # a Stratonovich scheme: averages the diffusion at both ends.
            def step(y, j):
                dw = 0.1 * jax.random.normal(jax.random.fold_in(k, j), (1,))
                pred = y + diffusion(0.0, y, dw)
                return y + 0.5 * (diffusion(0.0, y, dw) + diffusion(0.0, pred, dw)), None
            return jax.lax.scan(step, jnp.ones(1), jnp.arange(100))[0]
        sim = heun_path
    out = sample_paths(sim, key, 20_000)
    x = out.y[:, -1, 0] if not heun else out[:, 0]
    return float(jnp.mean(jnp.log(jnp.abs(x))))


def test_simulator_is_ito_not_stratonovich(key):
    """State-dependent Σ: Euler–Maruyama gives E log X_1 ≈ −1/2 (SE 0.007); a Heun scheme ≈ 0."""
    with jax.enable_x64(True):
        assert abs(_ito_or_stratonovich(key, heun=False) + 0.5) < 0.04
        assert abs(_ito_or_stratonovich(key, heun=True)) < 0.04


def test_euler_maruyama_general_and_reproducible(key):
    """Generic EM on OU; the same key reproduces a path, another key does not."""
    with jax.enable_x64(True):
        sim = lambda k: euler_maruyama(lambda t, y: -y, lambda t, y, dw: 0.5 * dw,  # noqa: E731
                                       jnp.ones(3), noise_dim=3, dt=0.01, num_steps=100, key=k,
                                       save_every=50)
        a, b = jax.jit(sim)(key), jax.jit(sim)(key)
        assert np.array_equal(a.y, b.y) and a.y.shape == (3, 3)
        assert not np.allclose(a.y[-1], jax.jit(sim)(jax.random.fold_in(key, 1)).y[-1])
        assert np.allclose(a.y[-1].mean(), math.exp(-1), atol=0.5)


def test_vmapped_paths_are_independent(key):
    """Sample correlations between paths (neighbouring and distant keys) and coordinates ≈ 0."""
    with jax.enable_x64(True):
        n = 4000
        paths = sample_paths(lambda k: sgd_sde(
            lambda th: th, diagonal_noise(jnp.ones(2)), jnp.zeros(2), lr=1.0, dt=0.05,
            num_steps=100, key=k, save_every=100), key, n)
        x = np.asarray(paths.y[:, -1])
        bound = 4 / math.sqrt(n / 2)
        for a, b in ((x[:-1:2, 0], x[1::2, 0]), (x[: n // 2, 0], x[n // 2:, 0]),
                     (x[:, 0], x[:, 1])):
            assert abs(np.corrcoef(a, b)[0, 1]) < bound
        assert x[:, 0].var() > 0.3  # OU stationary variance 1/2: the paths do move.


def test_minibatch_noise_matches_explicit_covariance(key):
    """Gᵀz/√(nB) gives Σ_B = cov(per-example grads)/B exactly, chunked or not, with a pytree."""
    with jax.enable_x64(True):
        n, batch = 12, 3
        kx, ky, kp = jax.random.split(key, 3)
        data = {"x": jax.random.normal(kx, (n, 3)), "y": jax.random.normal(ky, (n,))}
        params = {"w": jax.random.normal(kp, (3,)), "b": jnp.array(0.3)}
        flat, unravel = jax.flatten_util.ravel_pytree(params)

        def example_loss(p, ex):
            return 0.5 * (jnp.tanh(ex["x"] @ p["w"] + p["b"]) - ex["y"]) ** 2

        grads = jax.vmap(lambda ex: jax.flatten_util.ravel_pytree(
            jax.grad(example_loss)(params, ex))[0])(data)
        centred = np.asarray(grads - grads.mean(0))
        sigma_b = centred.T @ centred / (n * batch)
        for chunk in (None, 4):
            noise = minibatch_noise(example_loss, data, batch, unravel=unravel, chunk_size=chunk)
            assert noise.dim == n
            cols = jax.vmap(lambda z, nz=noise: nz.apply(flat, z)[0])(jnp.eye(n))
            assert np.allclose(np.asarray(cols).T @ np.asarray(cols), sigma_b, atol=1e-12)
            assert np.allclose(noise.apply(flat, jnp.zeros(n))[1], np.diag(sigma_b), atol=1e-12)
        with pytest.raises(ConfigError, match="chunk_size"):
            minibatch_noise(example_loss, data, batch, chunk_size=5)


@pytest.mark.usefixtures("xla_optimized")  # 3M path-steps
@pytest.mark.parametrize("name", ["rmsprop", "adam"])
def test_adaptive_stationary_loss(key, name):
    """optax RMSprop (ε outside √) and Adam on a noise-dominated NQM: the loss floor is
    (η/4) Σ Var[g]/(√Var[g] + ε), independent of h (4 curvatures over a factor 8); tolerance 6 %."""
    with jax.enable_x64(True):
        lr, eps = 0.02, 1e-8
        h, s = np.array([1.0, 0.5, 0.25, 0.125]), np.ones(4)
        tx = (optax.rmsprop(lr, decay=0.99, eps=eps, eps_in_sqrt=False) if name == "rmsprop"
              else optax.adam(lr, b1=0.9, b2=0.99, eps=eps))
        paths = sample_paths(lambda k: run_optimizer(
            tx, nqm_oracle(h, s), jnp.zeros(4), num_steps=3000, key=k, save_every=10,
            observe=lambda th: 0.5 * jnp.sum(jnp.asarray(h) * th**2)), key, 1000)
        got = float(np.asarray(paths.y[:, 100:]).mean())
        want = float(adaptive_stationary_loss(lr, s, eps))
        assert got == pytest.approx(want, rel=0.06)
        # the SDE constants give the same number (σ = 1, so σ0 = η, ε0 = εη).
        c = adaptive_constants(lr, b2=0.99, eps=eps)
        var = adaptive_stationary_variance(c.sigma0, c.eps0, h, s)
        assert float(np.sum(0.5 * h * var)) == pytest.approx(want, rel=1e-9)


def _coupled_ladder(key, name, ells, eta0, t_end, n):
    """Discrete RMSprop/Adam at η0/ℓ (σ0, ε0, c fixed: the SVAG ladder) vs the SDE on a fine grid.

    The discrete noise of step k is the sum of the SDE's fine Brownian increments over that step,
    so the two are coupled and the Monte Carlo error of the *difference* is small.
    """
    sigma0, eps0, c1, c2 = 1.0, 0.1, 4.0, 1.0
    h, s, theta0 = jnp.asarray(H), jnp.asarray(S), jnp.asarray(THETA0)
    u0 = 0.25 * s
    noise = diagonal_noise(s)
    eta_min = eta0 / max(ells)
    dt = eta_min**2 / 2
    n_fine = int(round(t_end / dt))
    grad = lambda th: h * th  # noqa: E731
    if name == "rmsprop":
        sde = lambda k: rmsprop_sde(grad, noise, theta0, sigma0=sigma0, eps0=eps0, c2=c2,  # noqa
                                    dt=dt, num_steps=n_fine, key=k, u0=u0, save_every=n_fine)
    else:
        sde = lambda k: adam_sde(grad, noise, theta0, sigma0=sigma0, eps0=eps0, c1=c1,  # noqa
                                 c2=c2, dt=dt, num_steps=n_fine, key=k, u0=u0,
                                 save_every=n_fine)
    keys = jax.random.split(key, n)
    ref = jax.jit(jax.vmap(sde))(keys).y
    ref = {"theta": ref.theta[:, -1], "u": ref.u[:, -1]}
    out = {}
    for ell in ells:
        eta = eta0 / ell
        sigma, eps, b1, b2 = sigma0 / eta, eps0 / eta, 1 - c1 * eta**2, 1 - c2 * eta**2
        per = int(round(eta**2 / dt))
        steps = n_fine // per

        def discrete(k, eta=eta, sigma=sigma, eps=eps, b1=b1, b2=b2, per=per, steps=steps):
            def step(carry, i):  # hand-written RMSprop / bias-corrected Adam, paper conventions.
                th, m, v = carry
                j = i * per + jnp.arange(per)
                dw = jax.vmap(lambda jj: jax.random.normal(jax.random.fold_in(k, jj), (2,),
                                                           th.dtype))(j).sum(0) * math.sqrt(dt)
                g = h * th + sigma * jnp.sqrt(s) * dw / eta
                v = b2 * v + (1 - b2) * g**2
                if name == "rmsprop":
                    return (th - eta * g / (jnp.sqrt(v) + eps), m, v), None
                m = b1 * m + (1 - b1) * g
                kk = (i + 1).astype(th.dtype)
                mh, vh = m / (1 - b1**kk), v / (1 - b2**kk)
                return (th - eta * mh / (jnp.sqrt(vh) + eps), m, v), None
            init = (theta0, jnp.zeros(2), u0 * sigma**2)
            (th, _, v), _ = jax.lax.scan(step, init, jnp.arange(steps))
            return {"theta": th, "u": v / sigma**2}

        got = jax.jit(jax.vmap(discrete))(keys)
        errs = {}
        for label, fn in (("E theta", lambda d: d["theta"]), ("E theta^2", lambda d: d["theta"]**2),
                          ("E u", lambda d: d["u"])):
            diff = np.asarray(fn(got) - fn(ref))
            errs[label] = (np.abs(diff.mean(0)).max(), diff.std(0).max() / math.sqrt(n))
        out[ell] = errs
    return out


@pytest.mark.usefixtures("xla_optimized")  # 4000 paths on a fine grid
@pytest.mark.parametrize("name,eta0", [("rmsprop", 0.5), ("adam", 0.25)])
def test_adaptive_weak_error_shrinks_along_svag_ladder(key, name, eta0):
    """Discrete RMSprop/Adam → their SDEs as η → 0 with σ0, ε0, c1, c2 fixed (Malladi et al.).

    Problem of sde.md §8: h = (1, 0.25), Σ = diag(1, 4), θ0 = (2, −2), σ0 = 1, ε0 = 0.1, c1 = 4,
    c2 = 1, u0 = Σ/4, T = 3, 4000 coupled paths. Each error at ℓ = 4 (η0/4) is ≤ 0.4 × its ℓ = 1
    value (weak order 1 predicts 0.25) or within 3 coupled standard errors of 0, and the largest
    ℓ = 1 error is ≥ 8 standard errors (so the ladder resolves the errors it checks).
    """
    with jax.enable_x64(True):
        errs = _coupled_ladder(key, name, (1, 4), eta0, 3.0, 4000)
        for label in errs[1]:
            e1, _ = errs[1][label]
            e4, se4 = errs[4][label]
            assert e4 <= max(0.4 * e1, 3 * se4), (label, errs)
        assert max(e / se for e, se in errs[1].values()) > 8, errs
