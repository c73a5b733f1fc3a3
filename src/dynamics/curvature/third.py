r"""Third-derivative products of a scalar loss over a pytree: gradients of Hessian quadratic forms.

For a loss :math:`L(w)` with Hessian :math:`H(w)` and *fixed* directions :math:`u, v`,

.. math:: \nabla_w\big(u^\top H(w)\, v\big) = D^3L(w)[u, v, \cdot\,],

a parameter-space vector, symmetric in :math:`(u, v)`. Special cases used by central flows (Cohen,
Damian et al. 2025, arXiv 2410.24206):

* the gradient of an eigenvalue, :math:`\nabla S = \nabla_w(u^\top H(w) u)` for a unit eigenvector
  :math:`u` of a simple eigenvalue :math:`S` (first-order perturbation theory);
* the implicit curvature penalty :math:`\nabla\langle H, \Sigma\rangle` with :math:`\Sigma = U\tilde\Sigma
  U^\top`: the gradient of :math:`\mathrm{tr}(\tilde\Sigma\, U^\top H(w) U)` with :math:`U` held fixed,
  i.e. :math:`\sum_{ij}\tilde\Sigma_{ij}\nabla(u_i^\top H u_j)`.

Two AD orderings are offered (they agree to rounding): ``mode="jvp"`` differentiates the HVP
:math:`w \mapsto H(w)u` forward along :math:`v` (forward over forward over reverse) and ``mode="grad"``
takes the reverse-mode gradient of the scalar :math:`D^2L(w)[u, v]`, itself two nested ``jvp``\ s.
Each costs a few HVPs. Every operation of the loss must have correct derivatives to third order: a
hand-written ``custom_jvp``/``custom_vjp`` rule can be right at order two and wrong at order three
(the central-flows authors found this in PyTorch's fused LayerNorm); ``flax.linen.LayerNorm`` is tested.

Call these inside ``jax.jit`` with params and data as jit arguments.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from dynamics.curvature.hvp import hvp

PyTree = object
Loss = Callable[[PyTree], jax.Array]
MODES = ("jvp", "grad")


def hessian_quadratic(loss_fn: Loss, params: PyTree, u: PyTree, v: PyTree) -> jax.Array:
    r""":math:`u^\top H(w)\, v = D^2L(w)[u, v]` by forward-over-forward differentiation (no reverse pass)."""
    first = lambda p: jax.jvp(loss_fn, (p,), (v,))[1]  # noqa: E731
    return jax.jvp(first, (params,), (u,))[1]


def third_vector(loss_fn: Loss, params: PyTree, u: PyTree, v: PyTree, *, mode: str = "jvp") -> PyTree:
    r""":math:`\nabla_w(u^\top H(w)\,v)`, a pytree shaped like ``params`` (``u``, ``v`` held fixed).

    Args:
      loss_fn: ``loss_fn(params) -> scalar``.
      params: the point :math:`w`.
      u, v: pytrees shaped like ``params``.
      mode: ``"jvp"`` (forward derivative of the HVP :math:`H(w)u` along :math:`v`) or ``"grad"``
        (reverse-mode gradient of :math:`D^2L(w)[u, v]`).
    """
    if mode == "jvp":
        return jax.jvp(lambda p: hvp(loss_fn, p, u), (params,), (v,))[1]
    if mode == "grad":
        return jax.grad(lambda p: hessian_quadratic(loss_fn, p, u, v))(params)
    raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}.")


def eigenvalue_gradient(loss_fn: Loss, params: PyTree, u: PyTree, *, mode: str = "jvp") -> PyTree:
    r""":math:`\nabla S = \nabla_w(u^\top H(w)\,u)`: the gradient of the eigenvalue :math:`S` whose unit
    eigenvector is ``u`` (exact for a simple eigenvalue; for a repeated one, the gradient of the Rayleigh
    quotient along ``u``)."""
    return third_vector(loss_fn, params, u, u, mode=mode)


def pair_indices(k: int):
    """Upper-triangular index pairs ``(i, j)``, ``i <= j``, in row-major order (``numpy.triu_indices``)."""
    i, j = jnp.triu_indices(k)
    return i, j


def third_vector_pairs(loss_fn: Loss, params: PyTree, U: PyTree, *, mode: str = "jvp") -> PyTree:
    r"""All :math:`G_{ij} = \nabla_w(u_i^\top H(w)\,u_j)` for :math:`i \le j` (``pair_indices(k)`` order).

    Args:
      loss_fn: ``loss_fn(params) -> scalar``.
      params: the point :math:`w`.
      U: the ``k`` directions stacked along a leading axis (a pytree shaped like ``params`` with an extra
        leading axis of size ``k``, e.g. ``TopKResult.vectors``).
      mode: AD ordering, see :func:`third_vector`.

    Returns:
      A pytree shaped like ``params`` with a leading axis of size ``k(k+1)/2``. Costs ``k(k+1)/2`` third
      derivative products (each a few HVPs), vmapped.
    """
    k = jax.tree.leaves(U)[0].shape[0]
    i, j = pair_indices(k)
    ui = jax.tree.map(lambda x: x[i], U)
    uj = jax.tree.map(lambda x: x[j], U)
    return jax.vmap(lambda a, b: third_vector(loss_fn, params, a, b, mode=mode))(ui, uj)


def hessian_inner_gradient(loss_fn: Loss, params: PyTree, U: PyTree, X: jax.Array) -> PyTree:
    r""":math:`\nabla_w\,\mathrm{tr}(X\, U^\top H(w)\, U) = \nabla\langle H, \Sigma\rangle` for
    :math:`\Sigma = U X U^\top`, with ``U`` held fixed.

    ``X`` (``(k, k)``, symmetrised) is diagonalised, :math:`X = Q\,\mathrm{diag}(d)\,Q^\top`; with
    :math:`v_m = \sum_i Q_{im} u_i`, the result is the reverse-mode gradient of the scalar
    :math:`\sum_m d_m D^2L(w)[v_m, v_m]`: one gradient of ``k`` forward-over-forward quadratic forms,
    cheaper than the ``k(k+1)/2`` products of :func:`third_vector_pairs`.

    Args:
      loss_fn: ``loss_fn(params) -> scalar``.
      params: the point :math:`w`.
      U: ``k`` directions stacked along a leading axis (pytree).
      X: ``(k, k)`` symmetric matrix :math:`\tilde\Sigma` (any sign).

    Returns:
      A pytree shaped like ``params``.
    """
    X = 0.5 * (X + X.T)
    d, Q = jnp.linalg.eigh(X)
    V = jax.tree.map(lambda x: jnp.tensordot(Q.T.astype(x.dtype), x, axes=1), U)

    def penalty(p):
        quad = jax.vmap(lambda v: hessian_quadratic(loss_fn, p, v, v))(V)
        return jnp.sum(d.astype(quad.dtype) * quad)

    return jax.grad(penalty)(params)
