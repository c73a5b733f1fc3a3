r"""Spherical (scale-invariant) sharpness and the effective learning rate :math:`\eta/\|\theta\|^2`.

For a scale-invariant loss, :math:`L(c\theta) = L(\theta)` for :math:`c > 0` (normalisation layers),
:math:`\nabla^2L(\theta) = \|\theta\|^{-2}\,\nabla^2L(\bar\theta)` with :math:`\bar\theta = \theta/\|\theta\|`.
GD with step :math:`\eta` then moves on the sphere with the effective step
:math:`\eta_{\mathrm{eff}} = \eta/\|\theta\|^2`, and the edge of stability reads
:math:`\eta_{\mathrm{eff}}\,\lambda_{\max}(\nabla^2L(\bar\theta)) \approx 2` (Lyu, Li, Arora 2022,
arXiv 2206.07085).
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from dynamics.compiled import self_compiling
from dynamics.curvature.hvp import flat_hvp
from dynamics.curvature.topk import TopKResult, eigsh_top_k, initial_block

PyTree = object


class SphericalSharpness(NamedTuple):
    """Spherical sharpness at :math:`\\theta/\\|\\theta\\|` (a pytree).

    Attributes:
      value: :math:`\\lambda_{\\max}(\\nabla^2 L(\\bar\\theta))` (``eig.values[0]``).
      norm: :math:`\\|\\theta\\|` over the scale-invariant leaves.
      eig: the full ``TopKResult`` at :math:`\\bar\\theta`.
    """

    value: jax.Array
    norm: jax.Array
    eig: TopKResult


def param_norm(params: PyTree, mask: PyTree | None = None) -> jax.Array:
    r"""Euclidean norm :math:`\|\theta\|` over all leaves, or over the leaves where ``mask`` is True.

    Args:
      params: a pytree of arrays.
      mask: None or a pytree of Python bools with the structure of ``params``.

    Returns:
      Scalar norm.
    """
    leaves = jax.tree.leaves(params)
    keep = [True] * len(leaves) if mask is None else jax.tree.leaves(mask)
    if len(keep) != len(leaves):
        raise ValueError("mask must be a pytree of bools with the structure of params.")
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x, m in zip(leaves, keep) if m))


def effective_lr(lr, params: PyTree, mask: PyTree | None = None) -> jax.Array:
    r"""Effective learning rate :math:`\eta_{\mathrm{eff}} = \eta/\|\theta\|^2` of a scale-invariant net.

    Args:
      lr: learning rate :math:`\eta`.
      params: the parameters :math:`\theta`.
      mask: scale-invariant leaves (default: all).

    Returns:
      :math:`\eta/\|\theta\|^2`.
    """
    return lr / param_norm(params, mask) ** 2


def normalize_params(params: PyTree, mask: PyTree | None = None) -> PyTree:
    r""":math:`\bar\theta`: the masked leaves divided by their joint norm, the other leaves unchanged.

    Args:
      params: the parameters :math:`\theta`.
      mask: scale-invariant leaves (default: all).

    Returns:
      A pytree shaped like ``params``.
    """
    norm = param_norm(params, mask)
    if mask is None:
        return jax.tree.map(lambda x: x / norm, params)
    return jax.tree.map(lambda x, m: x / norm if m else x, params, mask)


@self_compiling(static=("k", "mask", "project", "method", "max_iters"))
def spherical_sharpness(loss_fn: Callable[[PyTree], jax.Array], params: PyTree, k: int = 1, *,
                        key: jax.Array, mask: PyTree | None = None, project: bool = False,
                        method: str = "lanczos", tol: float = 1e-5, max_iters: int = 500,
                        init: PyTree | None = None) -> SphericalSharpness:
    r"""Spherical sharpness :math:`\lambda_{\max}(\nabla^2L(\theta/\|\theta\|))`.

    The Hessian is taken at :math:`\bar\theta = \theta/\|\theta\|` (only the ``mask`` leaves are
    rescaled, by their joint norm). With ``project=True`` the eigenproblem is restricted to the tangent
    space of the sphere, :math:`(I-\bar u\bar u^\top)\nabla^2L(\bar\theta)(I-\bar u\bar u^\top)` with
    :math:`\bar u` the unit radial direction (the radial direction is flat for a scale-invariant loss
    only to first order: :math:`\nabla^2L(\bar\theta)\bar\theta = -\nabla L(\bar\theta)`). Multiply
    ``value`` by :func:`effective_lr` and compare with 2.

    Args:
      loss_fn: ``loss_fn(params) -> scalar``.
      params: the parameters :math:`\theta` (a pytree).
      k: number of eigenpairs.
      key: PRNG key for the random start.
      mask: pytree of Python bools marking the scale-invariant leaves (default: all).
      project: project out the radial direction.
      method: ``"lanczos"``, ``"power"`` or ``"lobpcg"``.
      tol: relative residual tolerance (see ``top_eigenvalues``).
      max_iters: maximum number of Hessian-vector products.
      init: warm start (previous ``eig.vectors``).

    Returns:
      ``SphericalSharpness(value, norm, eig)``.
    """
    norm = param_norm(params, mask)
    pbar = normalize_params(params, mask)
    matvec, flat, unravel = flat_hvp(loss_fn, pbar)
    if project:
        radial = pbar if mask is None else jax.tree.map(
            lambda x, m: x if m else jnp.zeros_like(x), pbar, mask)
        u = ravel_pytree(radial)[0]
        u = u / jnp.linalg.norm(u)

        def op(v):
            v = v - u * jnp.vdot(u, v)
            w = matvec(v)
            return w - u * jnp.vdot(u, w)
    else:
        op = matvec
    V0 = initial_block(params, k, key, init)
    res = eigsh_top_k(op, V0, method=method, tol=tol, max_iters=max_iters)
    res = res._replace(vectors=jax.vmap(unravel)(res.vectors))
    return SphericalSharpness(res.values[0], norm, res)
