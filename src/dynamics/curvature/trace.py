r"""Stochastic Hessian trace: Hutchinson and Hutch++, each with a standard error."""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from dynamics.compiled import self_compiling
from dynamics.curvature.hvp import flat_hvp

PyTree = object
Matvec = Callable[[jax.Array], jax.Array]
TRACE_METHODS = ("hutchinson", "hutchpp")


class TraceEstimate(NamedTuple):
    """A stochastic trace estimate (a pytree).

    Attributes:
      estimate: the unbiased trace estimate.
      stderr: its standard error (sample standard deviation of the Monte-Carlo terms / √count).
      num_matvecs: Hessian-vector products spent.
    """

    estimate: jax.Array
    stderr: jax.Array
    num_matvecs: jax.Array


def _quadratic_forms(matvec: Matvec, Z: jax.Array, batch_size: int | None) -> jax.Array:
    """``z_i^T A z_i`` for the rows of ``Z``, mapped over rows in chunks of ``batch_size``."""
    return jax.lax.map(lambda z: jnp.vdot(z, matvec(z)), Z, batch_size=batch_size)


def _mean_and_sem(x: jax.Array):
    return jnp.mean(x), jnp.std(x, ddof=1) / jnp.sqrt(x.shape[0])


def trace_estimate(matvec: Matvec, n: int, dtype, *, key: jax.Array, num_samples: int,
                   method: str = "hutchinson", batch_size: int | None = None) -> TraceEstimate:
    r"""Trace of a symmetric operator on flat vectors by Hutchinson or Hutch++.

    Hutchinson: :math:`\widehat{\mathrm{tr}} = \frac1N\sum_i z_i^\top A z_i` with Rademacher
    :math:`z_i`; variance per sample :math:`2(\|A\|_F^2 - \sum_i A_{ii}^2)`.

    Hutch++ (Meyer, Musco, Musco, Woodruff 2021): with :math:`s = \lfloor N/3\rfloor`, sketch
    :math:`Q = \mathrm{orth}(A S)` from ``s`` Rademacher vectors, take :math:`\mathrm{tr}(Q^\top A Q)`
    exactly (``s`` matvecs) and Hutchinson on the deflated :math:`(I-QQ^\top)A(I-QQ^\top)` with the
    remaining :math:`N - 2s` vectors. The standard error is that of the Hutchinson part, conditional
    on the sketch (the estimate is unbiased given :math:`Q`). It wins when the spectrum decays (a few
    large Hessian eigenvalues dominate the trace).

    Args:
      matvec: symmetric operator on flat vectors ``(n,)``.
      n: dimension.
      dtype: dtype of the probe vectors.
      key: PRNG key.
      num_samples: total number of matvecs ``N`` (``≥ 2`` for Hutchinson, ``≥ 6`` for Hutch++).
      method: ``"hutchinson"`` or ``"hutchpp"``.
      batch_size: matvecs vmapped together (``None``: all at once; smaller saves memory).

    Returns:
      ``TraceEstimate(estimate, stderr, num_matvecs)``.
    """
    if method == "hutchinson":
        if num_samples < 2:
            raise ValueError("hutchinson needs num_samples >= 2 for a standard error.")
        Z = jax.random.rademacher(key, (num_samples, n), dtype)
        est, se = _mean_and_sem(_quadratic_forms(matvec, Z, batch_size))
        return TraceEstimate(est, se, jnp.asarray(num_samples))
    if method == "hutchpp":
        s = num_samples // 3
        m = num_samples - 2 * s
        if s < 1 or m < 2:
            raise ValueError("hutchpp needs num_samples >= 6 (a third sketch, a third for Q^T A Q).")
        k_s, k_g = jax.random.split(key)
        S = jax.random.rademacher(k_s, (s, n), dtype)
        AS = jax.lax.map(matvec, S, batch_size=batch_size)
        Q = jnp.linalg.qr(AS.T)[0]
        t_low = jnp.sum(_quadratic_forms(matvec, Q.T, batch_size))
        G = jax.random.rademacher(k_g, (m, n), dtype)
        G = G - (G @ Q) @ Q.T
        # g ⟂ Q, so g^T A g = g^T (I - QQ^T) A (I - QQ^T) g.
        t_rest, se = _mean_and_sem(_quadratic_forms(matvec, G, batch_size))
        return TraceEstimate(t_low + t_rest, se, jnp.asarray(num_samples))
    raise ValueError(f"unknown method {method!r}; valid: {', '.join(TRACE_METHODS)}.")


@self_compiling(static=("num_samples", "method", "batch_size"))
def hessian_trace(loss_fn: Callable[[PyTree], jax.Array], params: PyTree, *, key: jax.Array,
                  num_samples: int = 100, method: str = "hutchinson",
                  batch_size: int | None = None) -> TraceEstimate:
    r"""Stochastic estimate of :math:`\mathrm{tr}\,\nabla^2 L(\theta)` with its standard error.

    See :func:`trace_estimate` for the estimators. Compiles itself (:mod:`dynamics.compiled`; the
    arrays ``loss_fn`` closes over become arguments); ``num_samples``, ``method`` and ``batch_size``
    are static.

    Args:
      loss_fn: ``loss_fn(params) -> scalar``.
      params: the point at which the Hessian is taken (a pytree).
      key: PRNG key for the probes.
      num_samples: Hessian-vector products to spend.
      method: ``"hutchinson"`` (Rademacher probes) or ``"hutchpp"``.
      batch_size: HVPs vmapped together (``None``: all at once).

    Returns:
      ``TraceEstimate(estimate, stderr, num_matvecs)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> loss = lambda p: 0.5 * jnp.sum(jnp.arange(1.0, 5.0) * p ** 2)
      >>> t = hessian_trace(loss, jnp.ones(4), key=jax.random.key(0), num_samples=8)
      >>> float(t.estimate), float(t.stderr)  # a diagonal Hessian: Rademacher probes are exact
      (10.0, 0.0)
    """
    matvec, flat, _ = flat_hvp(loss_fn, params)
    return trace_estimate(matvec, flat.shape[0], flat.dtype, key=key, num_samples=num_samples,
                          method=method, batch_size=batch_size)
