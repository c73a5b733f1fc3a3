r"""Gradient-noise models :math:`\Sigma(\theta)`, applied matrix-free.

A ``Noise`` holds ``dim`` (the size of a standard normal draw z) and
``apply(theta, z) -> (Σ(θ)^{1/2} z, diag Σ(θ))``, where "Σ^{1/2} z" means any linear map
:math:`F(\theta) z` with :math:`F F^\top = \Sigma` (so it has covariance Σ for
:math:`z \sim N(0, I_{dim})`). Parameters are flat vectors (ravel a pytree with
``jax.flatten_util.ravel_pytree``; ``minibatch_noise`` does it for you via ``unravel``).

``minibatch_noise`` estimates the covariance of a batch-B gradient from the per-example gradients
:math:`g_1,\dots,g_n` of a data set and never forms the P×P matrix:

.. math::
  \Sigma_B(\theta) = \frac{1}{nB} G^\top G, \qquad
  G = [g_i - \bar g]_{i=1}^n \in \mathbb R^{n\times P},
  \qquad \Sigma_B^{1/2} z := \frac{G^\top z}{\sqrt{nB}},\ z \in \mathbb R^n.

This is exact for minibatches drawn with replacement from the n examples (without replacement
multiply by (n − B)/(n − 1)).
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from dynamics.errors import check


class Noise(NamedTuple):
    """A gradient-noise covariance Σ(θ), applied matrix-free.

    Attributes:
      dim: size of the standard normal vector z that ``apply`` consumes.
      apply: ``apply(theta, z) -> (sqrt_sigma_z, diag_sigma)``, both shaped like ``theta``.
    """

    dim: int
    apply: Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


def diagonal_noise(variance, dim: int | None = None) -> Noise:
    r"""Diagonal noise :math:`\Sigma(\theta) = \mathrm{diag}(s(\theta))`.

    .. math::
      \Sigma^{1/2} z = \sqrt{s(\theta)} \odot z, \qquad z \in \mathbb R^P.

    Args:
      variance: an array ``s`` of per-coordinate variances (constant Σ), or a callable
        ``theta -> s(theta)`` (state-dependent Σ; then ``dim`` is required).
      dim: the number of parameters P (inferred from a constant ``variance``).

    Returns:
      A ``Noise``.
    """
    if callable(variance):
        check(dim is not None, "dim", dim, "the parameter count when variance is a callable")
        var_fn = variance
    else:
        const = jnp.asarray(variance)
        dim = const.size if dim is None else dim

        def var_fn(theta):
            return jnp.broadcast_to(const, theta.shape).astype(theta.dtype)

    def apply(theta, z):
        s = var_fn(theta)
        return jnp.sqrt(s) * z, s

    return Noise(int(dim), apply)


def minibatch_noise(example_loss: Callable, data, batch_size: int, *,
                    unravel: Callable | None = None, chunk_size: int | None = None) -> Noise:
    r"""Noise of a batch-B gradient, from the centred per-example gradients of ``data``.

    .. math::
      \Sigma_B^{1/2} z = \frac{1}{\sqrt{nB}} \sum_{i=1}^n (g_i - \bar g) z_i, \qquad
      \mathrm{diag}\,\Sigma_B = \frac{1}{B}\Big(\frac1n \sum_i g_i^2 - \bar g^2\Big),

    accumulated over chunks of examples with ``lax.scan`` (memory O(chunk·P), never P×P).

    Args:
      example_loss: ``example_loss(params, example) -> scalar``, the loss of *one* example (a leaf
        of ``data`` without its leading axis).
      data: a pytree whose leaves have a leading axis of n examples.
      batch_size: the minibatch size B whose noise is modelled.
      unravel: maps the flat θ to the ``params`` pytree ``example_loss`` takes (from
        ``ravel_pytree``); ``None`` if ``example_loss`` takes the flat vector.
      chunk_size: examples per chunk (must divide n); default all n at once.

    Returns:
      A ``Noise`` with ``dim = n``.
    """
    n = jax.tree.leaves(data)[0].shape[0]
    chunk = n if chunk_size is None else int(chunk_size)
    check(chunk >= 1 and n % chunk == 0, "chunk_size", chunk_size, f"a divisor of n={n}")
    check(batch_size >= 1, "batch_size", batch_size, "an integer >= 1")
    to_params = (lambda theta: theta) if unravel is None else unravel

    def flat_grad(theta, example):
        g = jax.grad(example_loss)(to_params(theta), example)
        return ravel_pytree(g)[0]

    chunks = jax.tree.map(lambda x: x.reshape(n // chunk, chunk, *x.shape[1:]), data)

    def apply(theta, z):
        zs = z.reshape(n // chunk, chunk).astype(theta.dtype)

        def body(acc, inputs):
            batch, zc = inputs
            g = jax.vmap(flat_grad, in_axes=(None, 0))(theta, batch)      # (chunk, P)
            s1, s0, sq = acc
            return (s1 + zc @ g, s0 + g.sum(0), sq + (g * g).sum(0)), None

        zero = jnp.zeros_like(theta)
        (s1, s0, sq), _ = jax.lax.scan(body, (zero, zero, zero), (chunks, zs))
        mean = s0 / n
        centred = s1 - mean * z.sum().astype(theta.dtype)
        return centred / jnp.sqrt(n * batch_size), (sq / n - mean**2) / batch_size

    return Noise(n, apply)
