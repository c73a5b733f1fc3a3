r"""Closed forms on the noisy quadratic :math:`f = \tfrac12\sum_i h_i\theta_i^2`.

The minibatch gradient is :math:`g = h\odot\theta + \xi`, :math:`\xi \sim N(0, \mathrm{diag}(s))`;
s is the *minibatch* noise variance (per-example variance / B). All functions act per coordinate
and broadcast over arrays.

SGD (learning rate η), per coordinate:

.. math::
  \text{discrete: } E\theta_k = (1-\eta h)^k\theta_0,\quad
  \mathrm{Var}\,\theta_k = \big(1-(1-\eta h)^{2k}\big)\frac{\eta s}{h(2-\eta h)};\qquad
  \text{SDE (OU): } E\theta_t = e^{-ht}\theta_0,\quad \mathrm{Var}\,\theta_t = \frac{\eta s}{2h}
  \big(1-e^{-2ht}\big),\ t = k\eta.

RMSprop/Adam SDE with u frozen at s (exact for the RMSprop SDE when :math:`u_0 = s`; Adam has the
same stationary θ variance, independent of :math:`c_1`), :math:`p = \sigma_0\sqrt s + \epsilon_0`:

.. math::
  E\theta_t = e^{-ht/p}\theta_0,\quad \mathrm{Var}\,\theta_t = \frac{\sigma_0^2 s}{2hp}
  \big(1-e^{-2ht/p}\big),

so in optimizer units the stationary loss in the noise-dominated regime is
:math:`E f_\infty \approx \frac{\eta}{4}\sum_i \frac{s_i}{\sqrt{s_i} + \epsilon}` (∝ η/√B), against
:math:`\frac{\eta}{4}\sum_i s_i` (∝ η/B) for the SGD SDE.
"""

import jax.numpy as jnp


def sgd_moments(lr, h, s, theta0, k):
    r"""Mean and variance of discrete SGD after k steps from a deterministic θ0.

    .. math::
      E\theta_k = (1-\eta h)^k\theta_0,\qquad
      \mathrm{Var}\,\theta_k = \big(1-(1-\eta h)^{2k}\big)\,\frac{\eta s}{h(2-\eta h)}.

    Args:
      lr: learning rate η.
      h: curvature.
      s: gradient-noise variance.
      theta0: initial value.
      k: number of steps.

    Returns:
      ``(mean, variance)``.
    """
    a = 1.0 - lr * h
    return a**k * theta0, (1.0 - a ** (2 * k)) * lr * s / (h * (2.0 - lr * h))


def sgd_sde_moments(lr, h, s, theta0, t):
    r"""Mean and variance of the SGD SDE (an Ornstein–Uhlenbeck process) at time t.

    .. math::
      d\theta = -h\theta\,dt + \sqrt{\eta s}\,dW:\quad E\theta_t = e^{-ht}\theta_0,\quad
      \mathrm{Var}\,\theta_t = \frac{\eta s}{2h}\big(1-e^{-2ht}\big).

    Args:
      lr: learning rate η.
      h: curvature.
      s: gradient-noise variance.
      theta0: initial value.
      t: time (t = kη).

    Returns:
      ``(mean, variance)``.
    """
    return jnp.exp(-h * t) * theta0, lr * s * -jnp.expm1(-2.0 * h * t) / (2.0 * h)


def sgd_stationary_variance(lr, h, s):
    r"""Stationary variance of discrete SGD: :math:`\eta s / (h(2-\eta h))` (needs ηh < 2).

    Args:
      lr: learning rate η.
      h: curvature.
      s: gradient-noise variance.

    Returns:
      The variance.
    """
    return lr * s / (h * (2.0 - lr * h))


def sgd_sde_stationary_variance(lr, h, s):
    r"""Stationary variance of the SGD SDE: :math:`\eta s/(2h)`.

    Args:
      lr: learning rate η.
      h: curvature.
      s: gradient-noise variance.

    Returns:
      The variance.
    """
    return lr * s / (2.0 * h)


def sgd_sde_stationary_loss(lr, s):
    r"""Stationary loss of the SGD SDE: :math:`E f_\infty = \frac{\eta}{4}\sum_i s_i` (any h > 0).

    Args:
      lr: learning rate η.
      s: per-coordinate gradient-noise variances.

    Returns:
      The expected loss.
    """
    return lr * jnp.sum(jnp.asarray(s)) / 4.0


def rmsprop_sde_moments(sigma0, eps0, h, s, theta0, t):
    r"""Mean and variance of the RMSprop SDE with u frozen at s (an OU process), at SDE time t.

    .. math::
      p = \sigma_0\sqrt s + \epsilon_0,\quad E\theta_t = e^{-ht/p}\theta_0,\quad
      \mathrm{Var}\,\theta_t = \frac{\sigma_0^2 s}{2hp}\big(1-e^{-2ht/p}\big).

    Args:
      sigma0: σ0 = ση.
      eps0: ε0 = εη.
      h: curvature.
      s: noise variance (Cov z; u is frozen at s).
      theta0: initial value.
      t: SDE time (t = kη²).

    Returns:
      ``(mean, variance)``.
    """
    p = sigma0 * jnp.sqrt(s) + eps0
    rate = h / p
    return jnp.exp(-rate * t) * theta0, sigma0**2 * s * -jnp.expm1(-2.0 * rate * t) / (2.0 * h * p)


def adaptive_stationary_variance(sigma0, eps0, h, s):
    r"""Stationary θ variance of the RMSprop and Adam SDEs (u at s): :math:`\sigma_0^2 s/(2hp)`.

    With :math:`p = \sigma_0\sqrt s + \epsilon_0`; for Adam the 2×2 Lyapunov equation of (θ, m)
    gives the same value, independent of :math:`c_1`.

    Args:
      sigma0: σ0 = ση.
      eps0: ε0 = εη.
      h: curvature.
      s: noise variance.

    Returns:
      The variance.
    """
    p = sigma0 * jnp.sqrt(s) + eps0
    return sigma0**2 * s / (2.0 * h * p)


def adaptive_stationary_loss(lr, var_g, eps):
    r"""Stationary loss of RMSprop/Adam on a quadratic, noise-dominated regime.

    .. math::
      E f_\infty \approx \frac{\eta}{4}\sum_i \frac{\mathrm{Var}[g_i]}{\sqrt{\mathrm{Var}[g_i]}
      + \epsilon},

    independent of the curvatures (ε outside the square root; valid when
    :math:`h_i^2 E\theta_i^2 \ll \mathrm{Var}[g_i]` and
    :math:`\eta h_i \ll \sqrt{\mathrm{Var}[g_i]}`).

    Args:
      lr: learning rate η.
      var_g: per-coordinate minibatch gradient-noise variances.
      eps: ε.

    Returns:
      The expected loss.
    """
    var_g = jnp.asarray(var_g)
    return lr / 4.0 * jnp.sum(var_g / (jnp.sqrt(var_g) + eps))
