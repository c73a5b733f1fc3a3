"""Hessian-vector products of a scalar loss over a pytree of parameters."""

from collections.abc import Callable

import jax
from jax.flatten_util import ravel_pytree

PyTree = object


def hvp(loss_fn: Callable[[PyTree], jax.Array], params: PyTree, v: PyTree) -> PyTree:
    r"""Hessian-vector product :math:`\nabla^2 L(\theta)\, v` by forward-over-reverse differentiation.

    Args:
      loss_fn: ``loss_fn(params) -> scalar``, any JAX-traceable function of a pytree.
      params: the point :math:`\theta` at which the Hessian is taken.
      v: a pytree with the structure of ``params``.

    Returns:
      A pytree with the structure of ``params``. Costs about two gradient evaluations.

    Call it inside ``jax.jit`` with the data passed as jit arguments (a ``loss_fn`` that closes over
    concrete data arrays makes XLA constant-fold them, which stalls compilation).
    """
    return jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]


def flat_hvp(loss_fn: Callable[[PyTree], jax.Array], params: PyTree):
    """Return ``(matvec, flat_params, unravel)`` with ``matvec`` acting on flat vectors."""
    flat, unravel = ravel_pytree(params)

    def matvec(vec: jax.Array) -> jax.Array:
        return ravel_pytree(hvp(loss_fn, params, unravel(vec)))[0]

    return matvec, flat, unravel
