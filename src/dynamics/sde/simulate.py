r"""Euler–Maruyama (Itô) simulators of the SGD, RMSprop and Adam SDEs, one path per call.

Every simulator is a pure function of a PRNG key: ``vmap`` it over keys for many paths
(``sample_paths``) and ``jit`` it. Step j (time :math:`t_j = t_0 + j\,dt`) uses the Brownian
increment :math:`\Delta W_j = \sqrt{dt}\, z_j`, :math:`z_j \sim N(0, I)` drawn from
``jax.random.fold_in(key, j)``, so a finer grid can be coupled to a coarser one.

The scheme is Itô: the diffusion is evaluated at the left end point. (Heun, midpoint and most
stochastic Runge–Kutta schemes converge to the *Stratonovich* solution, which differs whenever Σ
depends on θ.) For RMSprop/Adam the θ update uses the freshly updated second moment (and first
moment), as the algorithms do; those are functions of the past only, so the scheme stays Itô and
of weak order 1, and the Adam drift is finite at t = 0 where m = u = 0.

Paths are returned at every ``save_every``-th step, including the initial state, after
``observe(state)`` (default: the whole state) so that large problems keep only summaries.
"""

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from dynamics.errors import check
from dynamics.scan import scan_log
from dynamics.sde.noise import Noise

PyTree = object


class Path(NamedTuple):
    """Saved states of one simulated path (a leading paths axis after ``vmap``).

    Attributes:
      t: times of the saved states, shape ``(num_saves,)``.
      y: ``observe(state)`` stacked along a leading axis of length ``num_saves``.
    """

    t: jax.Array
    y: PyTree


class RMSpropSDEState(NamedTuple):
    """State of the RMSprop SDE: parameters θ and rescaled second moment u = v/σ²."""

    theta: jax.Array
    u: jax.Array


class AdamSDEState(NamedTuple):
    """State of the Adam SDE: parameters θ, first moment m, rescaled second moment u = v/σ²."""

    theta: jax.Array
    m: jax.Array
    u: jax.Array


class AdaptiveConstants(NamedTuple):
    r"""Constants of the RMSprop/Adam SDEs (Malladi et al. 2022) for an optimizer run.

    Attributes:
      sigma0: :math:`\sigma_0 = \sigma\eta`.
      eps0: :math:`\epsilon_0 = \epsilon\eta` (ε outside the square root).
      c1: :math:`c_1 = (1-\beta_1)/\eta^2` (``nan`` for RMSprop).
      c2: :math:`c_2 = (1-\beta_2)/\eta^2`.
      dt: SDE time per optimizer step, :math:`\eta^2`.
    """

    sigma0: float
    eps0: float
    c1: float
    c2: float
    dt: float


def adaptive_constants(lr: float, *, b2: float, eps: float, b1: float | None = None,
                       sigma: float = 1.0) -> AdaptiveConstants:
    r"""SDE constants of RMSprop/Adam with learning rate η, betas, ε and noise scale σ.

    .. math::
      \sigma_0 = \sigma\eta,\quad \epsilon_0 = \epsilon\eta,\quad c_i = (1-\beta_i)/\eta^2,\quad
      t = k\eta^2.

    With ``sigma=1`` the noise model is the minibatch covariance :math:`\Sigma_B` itself (then
    u = v, the optimizer's second moment); with :math:`\sigma = 1/\sqrt B` it is the per-example
    covariance Σ (then :math:`u = B v`). The θ paths are the same.

    Args:
      lr: learning rate η.
      b2: second-moment decay β2 (RMSprop's decay).
      eps: ε, outside the square root (PyTorch, optax ``adam``, ``rmsprop(eps_in_sqrt=False)``).
      b1: first-moment decay β1 (Adam); ``None`` for RMSprop.
      sigma: noise scale σ of the oracle :math:`g = \nabla f + \sigma z`, Cov z = Σ.

    Returns:
      ``AdaptiveConstants``.
    """
    c1 = math.nan if b1 is None else (1.0 - b1) / lr**2
    return AdaptiveConstants(sigma * lr, eps * lr, c1, (1.0 - b2) / lr**2, lr**2)


def _integrate(step: Callable, state0, key, noise_dim: int, *, dt: float, num_steps: int,
               save_every: int, observe: Callable | None, t0: float, dtype) -> Path:
    check(num_steps >= 1 and save_every >= 1 and num_steps % save_every == 0, "save_every",
          save_every, f"a divisor of num_steps={num_steps}")
    observe = (lambda s: s) if observe is None else observe
    sqrt_dt = math.sqrt(dt)

    def advance(carry):
        state, j = carry
        dw = sqrt_dt * jax.random.normal(jax.random.fold_in(key, j), (noise_dim,), dtype)
        t = t0 + j.astype(dtype) * dt
        return step(state, t, dw), j + 1

    n_saves = num_steps // save_every
    _, ys = scan_log(advance, (state0, jnp.int32(0)), num_steps, save_every,
                     observe=lambda carry: observe(carry[0]))
    ts = t0 + dt * save_every * jnp.arange(n_saves + 1, dtype=dtype)
    return Path(ts, ys)


def euler_maruyama(drift: Callable, diffusion: Callable, y0, *, noise_dim: int, dt: float,
                   num_steps: int, key: jax.Array, t0: float = 0.0, save_every: int = 1,
                   observe: Callable | None = None) -> Path:
    r"""Euler–Maruyama for a general Itô SDE :math:`dY = a(t, Y)\,dt + b(t, Y)\,dW`.

    .. math::
      Y_{j+1} = Y_j + a(t_j, Y_j)\,dt + b(t_j, Y_j)\,\Delta W_j,\qquad
      \Delta W_j \sim N(0, dt\, I_{noise\_dim}).

    Args:
      drift: ``drift(t, y) -> a`` (a pytree like ``y``).
      diffusion: ``diffusion(t, y, dw) -> b(t, y) dw`` (a pytree like ``y``; matrix-free).
      y0: initial state (pytree of arrays).
      noise_dim: dimension of the Brownian motion W.
      dt: step size.
      num_steps: number of steps.
      key: PRNG key of this path.
      t0: initial time.
      save_every: save every this many steps (must divide ``num_steps``).
      observe: ``observe(y) -> saved`` (default: y).

    Returns:
      ``Path(t, y)`` with ``num_steps // save_every + 1`` saved states.
    """
    dtype = jax.tree.leaves(y0)[0].dtype

    def step(y, t, dw):
        a = drift(t, y)
        b = diffusion(t, y, dw)
        return jax.tree.map(lambda yi, ai, bi: yi + ai * dt + bi, y, a, b)

    return _integrate(step, y0, key, noise_dim, dt=dt, num_steps=num_steps,
                      save_every=save_every, observe=observe, t0=t0, dtype=dtype)


def sgd_sde(grad_fn: Callable, noise: Noise, theta0: jax.Array, *, lr: float, dt: float,
            num_steps: int, key: jax.Array, t0: float = 0.0, save_every: int = 1,
            observe: Callable | None = None) -> Path:
    r"""One path of the SGD SDE (Li, Tai, E; Li, Malladi, Arora 2021), Itô.

    .. math::
      d\theta_t = -\nabla f(\theta_t)\,dt + \sqrt{\eta}\,\Sigma_B(\theta_t)^{1/2}\,dW_t,

    with time :math:`t = k\eta` after k SGD steps of learning rate η, and :math:`\Sigma_B` the
    covariance of the batch-B gradient noise (``noise``). Euler–Maruyama:
    :math:`\theta_{j+1} = \theta_j - \nabla f(\theta_j)\,dt + \sqrt\eta\,\Sigma_B^{1/2}(\theta_j)
    \Delta W_j`.

    Args:
      grad_fn: ``grad_fn(theta) -> ∇f(theta)`` (full-batch gradient, flat).
      noise: the minibatch noise model Σ_B.
      theta0: initial flat parameters.
      lr: the SGD learning rate η.
      dt: Euler–Maruyama step (dt = η reproduces the SGD recursion with Gaussian noise).
      num_steps: number of EM steps.
      key: PRNG key of this path.
      t0: initial time.
      save_every: save every this many steps.
      observe: ``observe(theta) -> saved``.

    Returns:
      ``Path(t, y)``.
    """
    root = math.sqrt(lr)

    def step(theta, t, dw):
        del t
        xi, _ = noise.apply(theta, dw)
        return theta - grad_fn(theta) * dt + root * xi

    return _integrate(step, theta0, key, noise.dim, dt=dt, num_steps=num_steps,
                      save_every=save_every, observe=observe, t0=t0, dtype=theta0.dtype)


def rmsprop_sde(grad_fn: Callable, noise: Noise, theta0: jax.Array, *, sigma0: float,
                eps0: float, c2: float, dt: float, num_steps: int, key: jax.Array,
                u0: jax.Array | None = None, t0: float = 0.0, save_every: int = 1,
                observe: Callable | None = None) -> Path:
    r"""One path of the RMSprop SDE (Malladi et al. 2022), Itô.

    .. math::
      d\theta_t &= -P_t^{-1}\big(\nabla f(\theta_t)\,dt
        + \sigma_0\,\Sigma(\theta_t)^{1/2}\,dW_t\big),\\
      du_t &= c_2\big(\mathrm{diag}\,\Sigma(\theta_t) - u_t\big)\,dt,\qquad
      P_t = \sigma_0\,\mathrm{diag}(u_t)^{1/2} + \epsilon_0 I,

    with :math:`\sigma_0 = \sigma\eta`, :math:`\epsilon_0 = \epsilon\eta`,
    :math:`c_2 = (1-\beta)/\eta^2`, time :math:`t = k\eta^2`, :math:`u = v/\sigma^2`
    (``adaptive_constants``). Scheme: :math:`u_{j+1} = u_j + c_2(\mathrm{diag}\Sigma(\theta_j) -
    u_j)dt`, then :math:`\theta_{j+1} = \theta_j - (\nabla f(\theta_j) dt + \sigma_0
    \Sigma^{1/2}(\theta_j)\Delta W_j)/P(u_{j+1})`.

    Args:
      grad_fn: ``grad_fn(theta) -> ∇f(theta)`` (flat).
      noise: noise model Σ (Cov of z in the oracle ∇f + σz).
      theta0: initial flat parameters.
      sigma0: σ0 = ση.
      eps0: ε0 = εη (ε outside the square root).
      c2: c2 = (1 − β)/η².
      dt: Euler–Maruyama step (dt = η² matches one optimizer step).
      num_steps: number of EM steps.
      key: PRNG key of this path.
      u0: initial u (default zeros, as optax's ν0 = 0).
      t0: initial time.
      save_every: save every this many steps.
      observe: ``observe(RMSpropSDEState) -> saved``.

    Returns:
      ``Path(t, y)``.
    """
    u0 = jnp.zeros_like(theta0) if u0 is None else jnp.asarray(u0, theta0.dtype)

    def step(state, t, dw):
        del t
        theta, u = state
        xi, diag = noise.apply(theta, dw)
        u = u + c2 * (diag - u) * dt
        p = sigma0 * jnp.sqrt(u) + eps0
        return RMSpropSDEState(theta - (grad_fn(theta) * dt + sigma0 * xi) / p, u)

    return _integrate(step, RMSpropSDEState(theta0, u0), key, noise.dim, dt=dt,
                      num_steps=num_steps, save_every=save_every, observe=observe, t0=t0,
                      dtype=theta0.dtype)


def adam_sde(grad_fn: Callable, noise: Noise, theta0: jax.Array, *, sigma0: float, eps0: float,
             c1: float, c2: float, dt: float, num_steps: int, key: jax.Array,
             m0: jax.Array | None = None, u0: jax.Array | None = None, t0: float = 0.0,
             save_every: int = 1, observe: Callable | None = None) -> Path:
    r"""One path of the Adam SDE (Malladi et al. 2022), Itô.

    .. math::
      d\theta_t &= -\frac{\sqrt{\gamma_2(t)}}{\gamma_1(t)}\,P_t^{-1} m_t\,dt,\\
      dm_t &= c_1\big(\nabla f(\theta_t) - m_t\big)\,dt
        + \sigma_0 c_1\,\Sigma(\theta_t)^{1/2}\,dW_t,\\
      du_t &= c_2\big(\mathrm{diag}\,\Sigma(\theta_t) - u_t\big)\,dt,\\
      P_t &= \sigma_0\,\mathrm{diag}(u_t)^{1/2} + \epsilon_0\sqrt{\gamma_2(t)}\,I,\qquad
      \gamma_i(t) = 1 - e^{-c_i t},

    with :math:`c_i = (1-\beta_i)/\eta^2`, time :math:`t = k\eta^2`; the γ's are Adam's bias
    corrections (:math:`1-\beta_i^k \approx 1 - e^{-c_i t}`). θ has no direct noise. Scheme: update
    m and u with the left-point θ, then θ with the new m, u and :math:`\gamma_i(t_{j+1})`.

    Args:
      grad_fn: ``grad_fn(theta) -> ∇f(theta)`` (flat).
      noise: noise model Σ.
      theta0: initial flat parameters.
      sigma0: σ0 = ση.
      eps0: ε0 = εη.
      c1: c1 = (1 − β1)/η².
      c2: c2 = (1 − β2)/η².
      dt: Euler–Maruyama step (dt = η² matches one optimizer step).
      num_steps: number of EM steps.
      key: PRNG key of this path.
      m0: initial m (default zeros).
      u0: initial u (default zeros).
      t0: initial time (the γ's use it; t0 > 0 resumes a run).
      save_every: save every this many steps.
      observe: ``observe(AdamSDEState) -> saved``.

    Returns:
      ``Path(t, y)``.
    """
    m0 = jnp.zeros_like(theta0) if m0 is None else jnp.asarray(m0, theta0.dtype)
    u0 = jnp.zeros_like(theta0) if u0 is None else jnp.asarray(u0, theta0.dtype)

    def step(state, t, dw):
        theta, m, u = state
        xi, diag = noise.apply(theta, dw)
        m = m + c1 * (grad_fn(theta) - m) * dt + sigma0 * c1 * xi
        u = u + c2 * (diag - u) * dt
        t_next = t + dt
        g1 = -jnp.expm1(-c1 * t_next)
        g2 = -jnp.expm1(-c2 * t_next)
        p = sigma0 * jnp.sqrt(u) + eps0 * jnp.sqrt(g2)
        return AdamSDEState(theta - jnp.sqrt(g2) / g1 * m / p * dt, m, u)

    state0 = AdamSDEState(theta0, m0, u0)
    return _integrate(step, state0, key, noise.dim, dt=dt, num_steps=num_steps,
                      save_every=save_every, observe=observe, t0=t0, dtype=theta0.dtype)


def sample_paths(simulate: Callable[[jax.Array], PyTree], key: jax.Array,
                 num_paths: int) -> PyTree:
    """Run ``simulate(key)`` for ``num_paths`` independent keys in one jitted, vmapped call.

    Args:
      simulate: one path as a function of its key, e.g.
        ``lambda k: sgd_sde(grad_fn, noise, theta0, lr=lr, dt=dt, num_steps=n, key=k)``.
      key: PRNG key; split into ``num_paths`` keys.
      num_paths: number of paths.

    Returns:
      ``simulate``'s output with a leading axis of ``num_paths``.
    """
    return jax.jit(jax.vmap(simulate))(jax.random.split(key, num_paths))
