r"""Hessian spectral density by stochastic Lanczos quadrature (SLQ)."""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from dynamics.compiled import self_compiling
from dynamics.curvature.hvp import flat_hvp
from dynamics.curvature.lanczos import lanczos_ritz

PyTree = object
Matvec = Callable[[jax.Array], jax.Array]


def slq_nodes_weights(matvec: Matvec, n: int, dtype, *, key: jax.Array, num_probes: int,
                      order: int, batch_size: int | None = None):
    r"""Gauss-quadrature nodes and weights of the spectral measure, one rule per random probe.

    For each probe :math:`v_p` (Rademacher, normalised) Lanczos with full re-orthogonalisation gives
    :math:`T_p = S_p \mathrm{diag}(\theta_p) S_p^\top`; then
    :math:`\frac1n\mathrm{tr} f(A) \approx \frac1P\sum_p\sum_j w_{pj} f(\theta_{pj})` with
    :math:`w_{pj} = (S_p)_{0j}^2` (Ubaru, Chen, Saad 2017; Ghorbani, Krishnan, Xiao 2019).

    Args:
      matvec: symmetric operator on flat vectors ``(n,)``.
      n: dimension.
      dtype: dtype of the probes.
      key: PRNG key.
      num_probes: number of probes ``P``.
      order: Lanczos steps per probe (clipped to ``n``); costs ``P·order`` matvecs.
      batch_size: probes run together (vmapped; ``None``: one at a time).

    Returns:
      ``(nodes, weights)``, each ``(num_probes, order)``; each row of ``weights`` sums to 1.
    """
    order = min(order, n)
    Z = jax.random.rademacher(key, (num_probes, n), dtype)
    return jax.lax.map(lambda z: lanczos_ritz(matvec, z, order), Z, batch_size=batch_size)


def gaussian_density(nodes: jax.Array, weights: jax.Array, grid: jax.Array,
                     sigma: jax.Array) -> jax.Array:
    r"""Smooth quadrature rules into a density: :math:`\rho(t) = \frac1P\sum_{p,j} w_{pj}\,
    \mathcal N(t;\theta_{pj},\sigma^2)`.

    Args:
      nodes: ``(P, m)`` Ritz values.
      weights: ``(P, m)`` weights, rows summing to 1.
      grid: ``(G,)`` evaluation points.
      sigma: kernel width.

    Returns:
      ``(G,)`` density values (integrates to 1 over a grid that covers the nodes by a few ``sigma``).
    """
    z = (grid[:, None] - nodes.reshape(-1)[None, :]) / sigma
    kern = jnp.exp(-0.5 * z ** 2) / (sigma * jnp.sqrt(2 * jnp.pi))
    return kern @ weights.reshape(-1) / nodes.shape[0]


@self_compiling(static=("num_probes", "order", "num_points", "batch_size"))
def spectral_density(loss_fn: Callable[[PyTree], jax.Array], params: PyTree, *, key: jax.Array,
                     num_probes: int = 8, order: int = 64, num_points: int = 1000,
                     grid: jax.Array | None = None, sigma: float | None = None,
                     batch_size: int | None = None):
    r"""Spectral density of the Hessian :math:`\nabla^2 L(\theta)` by stochastic Lanczos quadrature.

    Estimates :math:`\rho(t) = \frac1n\sum_i \delta(t-\lambda_i)` smoothed by a Gaussian of width
    :math:`\sigma`, from ``num_probes`` Lanczos runs of ``order`` steps (see :func:`slq_nodes_weights`).
    The density integrates to 1 and its mean :math:`\int t\rho(t)\,dt` is the Hutchinson estimate of
    :math:`\mathrm{tr}\,\nabla^2L/n` from the same probes. The extreme Ritz values converge fast, so the
    edges of the support are accurate even for a small ``order``.

    Args:
      loss_fn: ``loss_fn(params) -> scalar``.
      params: the point at which the Hessian is taken (a pytree).
      key: PRNG key for the probes.
      num_probes: number of random probes.
      order: Lanczos steps per probe (``num_probes · order`` HVPs).
      num_points: grid size when ``grid`` is None (static).
      grid: explicit evaluation points; default ``num_points`` points evenly spanning the Ritz values
        extended by ``5 sigma`` on each side.
      sigma: Gaussian width; default 1 % of the spread of the Ritz values.
      batch_size: probes vmapped together (``None``: one at a time).

    Returns:
      ``(grid, density)``, arrays of the same shape.
    """
    matvec, flat, _ = flat_hvp(loss_fn, params)
    nodes, weights = slq_nodes_weights(matvec, flat.shape[0], flat.dtype, key=key,
                                       num_probes=num_probes, order=order, batch_size=batch_size)
    lo, hi = jnp.min(nodes), jnp.max(nodes)
    if sigma is None:
        spread = hi - lo
        sigma = jnp.where(spread > 0, 0.01 * spread,
                          1e-3 * jnp.maximum(jnp.abs(hi), jnp.finfo(flat.dtype).eps))
    sigma = jnp.asarray(sigma, flat.dtype)
    if grid is None:
        grid = jnp.linspace(lo - 5 * sigma, hi + 5 * sigma, num_points, dtype=flat.dtype)
    grid = jnp.asarray(grid, flat.dtype)
    return grid, gaussian_density(nodes, weights, grid, sigma)
