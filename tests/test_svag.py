"""SVAG weights, hyperparameters, Monte Carlo moments of the combined gradient, O(1/ℓ) error."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dynamics.errors import ConfigError
from dynamics.sde import run_optimizer, sgd_moments, sgd_sde_moments
from dynamics.svag import (continuous_time, svag_gradient, svag_hyperparams, svag_objective,
                           svag_weights)


def test_weights_hand_values():
    r1, r2 = svag_weights(2, adaptive=False)
    assert (r1, r2) == pytest.approx(((1 + math.sqrt(3)) / 2, (1 - math.sqrt(3)) / 2))
    r1, r2 = svag_weights(2, adaptive=True)
    assert (r1, r2) == pytest.approx(((1 + math.sqrt(7)) / 2, (1 - math.sqrt(7)) / 2))
    assert svag_weights(1, adaptive=True) == (1.0, 0.0)
    for l in (1.5, 4, 8):
        for adaptive, power in ((False, 1), (True, 2)):
            r1, r2 = svag_weights(l, adaptive=adaptive)
            assert r1 + r2 == pytest.approx(1.0)
            assert r1**2 + r2**2 == pytest.approx(l**power)
    with pytest.raises(ConfigError, match="svag.l"):
        svag_weights(0.5, adaptive=False)


@pytest.mark.parametrize("adaptive", [False, True])
def test_combined_gradient_mean_and_covariance(key, adaptive):
    """Toy oracle g(θ; b) = Aθ + b, b ~ N(0, C): mean Aθ, covariance ℓ C (SGD) or ℓ² C (adaptive).

    Tolerance: 2 % on each covariance entry relative to ‖C‖ (the Monte Carlo standard error at
    2e5 samples is ≈ 0.3 %), and 5 standard errors on the mean.
    """
    l, n = 3.0, 200_000
    a = jnp.array([[2.0, 0.5], [0.0, 1.0]])
    c = jnp.array([[1.0, 0.6], [0.6, 2.0]])
    chol = jnp.linalg.cholesky(c)
    theta = {"w": jnp.array([0.3, -1.0])}
    grad_fn = lambda p, b: {"w": a @ p["w"] + b}  # noqa: E731
    r1, r2 = svag_weights(l, adaptive=adaptive)
    k1, k2 = jax.random.split(key)
    b1 = jax.random.normal(k1, (n, 2)) @ chol.T
    b2 = jax.random.normal(k2, (n, 2)) @ chol.T
    g = jax.vmap(lambda x, y: svag_gradient(grad_fn, theta, x, y, r1, r2))(b1, b2)["w"]
    factor = l**2 if adaptive else l
    g = np.asarray(g, np.float64)
    mean_err = np.abs(g.mean(0) - np.asarray(a @ theta["w"]))
    assert np.all(mean_err < 5 * np.sqrt(factor * np.diag(c) / n))
    cov = np.cov(g.T) / factor
    assert np.max(np.abs(cov - np.asarray(c))) < 0.02 * 2.0
    # The SVAG objective has the same gradient.
    loss = lambda p, b: jnp.sum(0.5 * p["w"] @ a.T @ p["w"] + b @ p["w"])  # noqa: E731
    sym = lambda p, b: {"w": 0.5 * (a + a.T) @ p["w"] + b}  # noqa: E731
    got = jax.grad(svag_objective(loss, r1, r2))(theta, b1[0], b2[0])["w"]
    assert np.allclose(got, svag_gradient(sym, theta, b1[0], b2[0], r1, r2)["w"], atol=1e-5)


def test_hyperparams():
    hp = {"lr": 0.1, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 0.1,
          "batch_size": 32}
    new, mult = svag_hyperparams("adamw", hp, 2)
    assert mult == 4 and new["batch_size"] == 32
    for k, v in {"lr": 0.05, "b1": 0.975, "b2": 1 - 0.001 / 4, "eps": 2e-8,
                 "weight_decay": 0.05}.items():
        assert new[k] == pytest.approx(v, rel=1e-12), k
    new, mult = svag_hyperparams("rmsprop", hp, 2)
    assert mult == 4 and new["eps"] == pytest.approx(4e-8) and new["b1"] == 0.9
    new, mult = svag_hyperparams("momentum", {"lr": 0.1, "momentum": 0.9, "batch_size": 8}, 4)
    assert mult == 4 and new == {"lr": pytest.approx(0.025), "momentum": 0.9, "batch_size": 8}


def test_continuous_time_lines_up():
    for l in (1, 2, 4):
        assert continuous_time(7 * l, 0.1, l, adaptive=False) == pytest.approx(0.7)
        assert continuous_time(7 * l * l, 0.1, l, adaptive=True) == pytest.approx(0.07)
    steps = np.arange(3)
    assert np.allclose(continuous_time(steps, 0.5, 2, adaptive=True), steps / 16)


def test_sgd_svag_weak_error_is_order_one_over_l(key):
    """SVAG-SGD on ½hθ² (h = s = 1, η = 0.5, T = 3): E θ_T² approaches the OU value as O(1/ℓ).

    Oracle: the exact discrete recursion with lr η/ℓ and noise variance ℓs (sgd_moments) and the
    OU closed form; Monte Carlo at 1e5 paths (standard error ≈ 1e-3) must agree within 5 SE.
    """
    with jax.enable_x64(True):
        eta, h, s, t_end, theta0, n = 0.5, 1.0, 1.0, 3.0, 1.0, 100_000
        m_ou, v_ou = sgd_sde_moments(eta, h, s, theta0, t_end)
        ou = float(m_ou**2 + v_ou)
        errs = []
        for l in (1, 2, 4):
            r1, r2 = svag_weights(l, adaptive=False)
            steps = int(round(t_end * l / eta))

            def oracle(theta, k, r1=r1, r2=r2):
                z = jax.random.normal(k, (2,) + theta.shape, theta.dtype)
                return svag_gradient(lambda p, b: h * p + math.sqrt(s) * b, theta, z[0], z[1],
                                     r1, r2)

            path = jax.jit(jax.vmap(lambda k, o=oracle, n_=steps: run_optimizer(
                optax.sgd(eta / l), o, jnp.ones(1) * theta0, num_steps=n_, key=k,
                save_every=n_)))(jax.random.split(jax.random.fold_in(key, l), n))
            x2 = np.asarray(path.y[:, -1, 0]) ** 2
            m, v = sgd_moments(eta / l, h, s * l, theta0, steps)
            assert abs(x2.mean() - float(m**2 + v)) < 5 * x2.std() / math.sqrt(n)
            errs.append(abs(x2.mean() - ou))
        assert errs[0] > 0.05 and errs[1] < 0.6 * errs[0] and errs[2] < 0.6 * errs[1]
