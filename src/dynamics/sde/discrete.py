r"""Discrete optimizers (any optax transformation) on stochastic gradient oracles, one path a call.

The counterpart of the SDE simulators: the same ``Path`` output, with ``t`` the step count k
(convert with t = kη for SGD, t = kη² for RMSprop/Adam). Step k calls
``oracle(theta, jax.random.fold_in(key, k))``. ``vmap`` over keys (``sample_paths``) for many paths.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from dynamics.errors import check
from dynamics.scan import scan_log
from dynamics.sde.noise import Noise, diagonal_noise
from dynamics.sde.simulate import Path


def gaussian_oracle(grad_fn: Callable, noise: Noise) -> Callable:
    r"""The Gaussian oracle :math:`g = \nabla f(\theta) + \Sigma(\theta)^{1/2} z`, z ~ N(0, I).

    Args:
      grad_fn: ``grad_fn(theta) -> ∇f(theta)`` (flat).
      noise: the noise model Σ (for SGD, the minibatch Σ_B).

    Returns:
      ``oracle(theta, key) -> g``.
    """

    def oracle(theta, key):
        z = jax.random.normal(key, (noise.dim,), theta.dtype)
        return grad_fn(theta) + noise.apply(theta, z)[0]

    return oracle


def nqm_oracle(h, s) -> Callable:
    r"""Noisy quadratic model: :math:`f = \tfrac12\sum_i h_i\theta_i^2`, :math:`g = h\odot\theta +
    \sqrt{s}\odot z`.

    Args:
      h: per-coordinate curvatures (array).
      s: per-coordinate gradient-noise variances (array, e.g. per-example variance / B).

    Returns:
      ``oracle(theta, key) -> g``.
    """
    h = jnp.asarray(h)
    return gaussian_oracle(lambda theta: h.astype(theta.dtype) * theta,
                           diagonal_noise(jnp.broadcast_to(jnp.asarray(s), h.shape)))


def run_optimizer(tx: optax.GradientTransformation, oracle: Callable, theta0: jax.Array, *,
                  num_steps: int, key: jax.Array, save_every: int = 1,
                  observe: Callable | None = None) -> Path:
    r"""One path of an optax optimizer driven by a stochastic gradient oracle.

    .. math::
      g_k = \mathrm{oracle}(\theta_k, \xi_k),\qquad (u_k, s_{k+1}) = \mathrm{tx.update}(g_k, s_k,
      \theta_k),\qquad \theta_{k+1} = \theta_k + u_k.

    Args:
      tx: an optax transformation (e.g. ``optax.sgd(lr)``, ``optax.adam(...)``,
        ``optax.rmsprop(..., eps_in_sqrt=False)`` to match the paper's RMSprop).
      oracle: ``oracle(theta, key) -> g``.
      theta0: initial flat parameters.
      num_steps: number of optimizer steps.
      key: PRNG key of this path.
      save_every: save every this many steps (must divide ``num_steps``).
      observe: ``observe(theta) -> saved`` (default θ).

    Returns:
      ``Path(t, y)`` with ``t`` the step counts 0, save_every, …, num_steps.
    """
    check(num_steps >= 1 and save_every >= 1 and num_steps % save_every == 0, "save_every",
          save_every, f"a divisor of num_steps={num_steps}")
    observe = (lambda x: x) if observe is None else observe

    def advance(carry):
        theta, opt_state, k = carry
        g = oracle(theta, jax.random.fold_in(key, k))
        updates, opt_state = tx.update(g, opt_state, theta)
        return optax.apply_updates(theta, updates), opt_state, k + 1

    n_saves = num_steps // save_every
    _, ys = scan_log(advance, (theta0, tx.init(theta0), jnp.int32(0)), num_steps, save_every,
                     observe=lambda carry: observe(carry[0]))
    return Path(save_every * jnp.arange(n_saves + 1), ys)
