r"""Generalized Gauss–Newton (GGN) and empirical-Fisher products, matrix-free.

Split the loss as :math:`L(\theta) = \ell(f(\theta))`, with ``apply_fn(params) -> outputs`` the network
on a fixed batch, :math:`f \in \mathbb R^{n\times C}` (examples first), and
``loss_of_outputs(outputs) -> scalar`` the loss of the outputs, :math:`J = \partial f/\partial\theta`.

* **GGN**: :math:`G = J^\top H_\ell J`, :math:`H_\ell = \nabla^2_f \ell`. The Hessian is
  :math:`\nabla^2 L = G + \sum_{i,c} \partial_{f_{ic}}\ell\,\nabla^2_\theta f_{ic}`; the second term vanishes
  for a model linear in :math:`\theta` and, for MSE, at interpolation. :math:`G \succeq 0` whenever
  :math:`\ell` is convex in :math:`f`. :math:`Gv` costs one ``jvp`` and one ``vjp`` of the network and no
  second derivative of it.
* **Empirical Fisher**: :math:`F = \frac1n\sum_i g_i g_i^\top` with :math:`g_i = J_i^\top r_i` the
  per-example gradient, :math:`r_i = \nabla_{f_i}\ell_i`. With :math:`\ell = \frac1n\sum_i \ell_i`,
  :math:`r_i = n\,\nabla_{f_i}\ell`, so :math:`Fv = \frac1n J^\top\big(r \odot (r\cdot Jv)\big)`: one ``jvp``
  and one ``vjp``, no per-example gradients (curvlinops' trick). It assumes ``loss_of_outputs`` is a
  **mean of per-example losses** over the leading axis (true for ``mse`` and ``cross_entropy``; not
  for ``sqrt_mse``).

Output Hessians :math:`H_\ell u` (``OutputLoss.hessian_vp``), in the conventions of
:mod:`dynamics.losses` (mean over the ``n`` examples):

* ``mse`` :math:`\frac1n\sum_i\tfrac12\|f_i - y_i\|^2`: :math:`H_\ell u = u/n`;
* ``cross_entropy`` (softmax, integer labels): :math:`(H_\ell u)_i = (p_i \odot u_i - p_i\,(p_i^\top u_i))/n`,
  independent of the labels, rank :math:`C-1` per example;
* any other ``loss_of_outputs`` (a plain callable): forward-over-reverse autodiff of ``loss_of_outputs``.

Flat operators (:func:`flat_ggn`, :func:`flat_empirical_fisher`) linearize the network once
(``jax.linearize``), so an eigensolver loop pays for one primal pass; they plug into
:func:`~dynamics.curvature.topk.eigsh_top_k` (Lanczos, block power, LOBPCG) and
:func:`~dynamics.curvature.trace.trace_estimate` (Hutchinson, Hutch++) like :func:`flat_hvp`.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from dynamics.curvature.topk import TopKResult, eigsh_top_k, initial_block
from dynamics.curvature.trace import TraceEstimate, trace_estimate

PyTree = object
OPERATORS = ("ggn", "empirical_fisher")


class OutputLoss:
    """A loss of the network outputs with a closed-form output Hessian product.

    Callable like the plain ``loss_of_outputs(outputs) -> scalar`` it wraps; :func:`ggn_vp` uses
    ``hessian_vp(outputs, u)`` = :math:`\\nabla^2_f\\ell(f)\\,u` instead of autodiff. Build one with
    :func:`mse_output_loss`, :func:`cross_entropy_output_loss` or :func:`output_loss`.

    Attributes:
      fn: ``fn(outputs) -> scalar``.
      hessian_vp: ``hessian_vp(outputs, u) -> array shaped like outputs``.
      name: the loss name (``"mse"``, ``"cross_entropy"``).
    """

    def __init__(self, fn: Callable, hessian_vp: Callable, name: str):
        self.fn = fn
        self.hessian_vp = hessian_vp
        self.name = name

    def __call__(self, outputs):
        return self.fn(outputs)

    def __repr__(self):
        return f"OutputLoss({self.name!r})"


def mse_output_loss(targets: jax.Array) -> OutputLoss:
    r""":math:`\frac1n\sum_i \tfrac12\|f_i - y_i\|^2` (``dynamics.losses.mse``) with :math:`H_\ell = I/n`.

    Args:
      targets: real targets shaped like the outputs, or integer labels (one-hot encoded).
    """
    from dynamics.losses import mse

    def hessian_vp(outputs, u):
        del outputs
        return u / u.shape[0]

    return OutputLoss(lambda f: mse(f, targets), hessian_vp, "mse")


def cross_entropy_output_loss(labels: jax.Array) -> OutputLoss:
    r"""Mean softmax cross-entropy (``dynamics.losses.cross_entropy``) with
    :math:`H_\ell u = (p\odot u - p\,(p^\top u))/n` per example, :math:`p = \mathrm{softmax}(f)`.

    Args:
      labels: integer labels ``(n,)``.
    """
    from dynamics.losses import cross_entropy

    def hessian_vp(outputs, u):
        p = jax.nn.softmax(outputs, axis=-1)
        return (p * u - p * jnp.sum(p * u, axis=-1, keepdims=True)) / u.shape[0]

    return OutputLoss(lambda f: cross_entropy(f, labels), hessian_vp, "cross_entropy")


_CLOSED_FORMS = {"mse": mse_output_loss, "cross_entropy": cross_entropy_output_loss}


def output_loss(name: str, targets: jax.Array) -> Callable:
    """``loss_of_outputs`` for a loss of :mod:`dynamics.losses` by name.

    ``mse`` and ``cross_entropy`` get their closed-form output Hessian (:class:`OutputLoss`); any other
    registered loss (``sqrt_mse``) is returned as a plain callable, differentiated by autodiff.
    """
    if name in _CLOSED_FORMS:
        return _CLOSED_FORMS[name](targets)
    from dynamics.losses import LOSSES

    loss = LOSSES.get(name)
    return lambda f: loss(f, targets)


def output_hessian_vp(loss_of_outputs: Callable, outputs: jax.Array, u: jax.Array) -> jax.Array:
    r""":math:`\nabla^2_f \ell(f)\,u`: closed form for an :class:`OutputLoss`, else forward-over-reverse."""
    closed = getattr(loss_of_outputs, "hessian_vp", None)
    if closed is not None:
        return closed(outputs, u)
    return jax.jvp(jax.grad(loss_of_outputs), (outputs,), (u,))[1]


def _per_example_residuals(loss_of_outputs: Callable, outputs: jax.Array) -> jax.Array:
    """:math:`r_i = \\nabla_{f_i}\\ell_i = n\\,\\nabla_{f_i}\\ell` for a mean over the leading axis."""
    return jax.grad(loss_of_outputs)(outputs) * outputs.shape[0]


def _fisher_outputs_vp(loss_of_outputs, outputs, u):
    """Output-space factor of the empirical Fisher: :math:`r_i (r_i\\cdot u_i)/n` per example."""
    r = _per_example_residuals(loss_of_outputs, outputs)
    axes = tuple(range(1, r.ndim))
    c = jnp.sum(r * u, axis=axes, keepdims=True)
    return r * c / r.shape[0]


def ggn_vp(apply_fn: Callable[[PyTree], jax.Array], loss_of_outputs: Callable[[jax.Array], jax.Array],
           params: PyTree, v: PyTree) -> PyTree:
    r"""GGN-vector product :math:`J^\top H_\ell J v` (module docstring).

    Args:
      apply_fn: ``apply_fn(params) -> outputs`` (the network on a fixed batch, examples first).
      loss_of_outputs: ``loss_of_outputs(outputs) -> scalar``; an :class:`OutputLoss` (from
        :func:`output_loss`, :func:`mse_output_loss`, :func:`cross_entropy_output_loss`) uses its
        closed-form output Hessian, a plain callable is differentiated twice by autodiff.
      params: the point :math:`\theta`.
      v: a pytree shaped like ``params``.

    Returns:
      A pytree shaped like ``params``. Costs one ``jvp`` and one ``vjp`` of ``apply_fn``.

    Example:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([[1.0, 2.0], [3.0, 4.0]])
      >>> y = jnp.zeros((2, 1))
      >>> gv = ggn_vp(lambda w: x @ w, mse_output_loss(y), jnp.ones((2, 1)), jnp.ones((2, 1)))
      >>> gv.ravel().tolist()  # linear model: the GGN is the Hessian x^T x / n
      [12.0, 17.0]
    """
    outputs, jv = jax.jvp(apply_fn, (params,), (v,))
    hjv = output_hessian_vp(loss_of_outputs, outputs, jv)
    _, vjp = jax.vjp(apply_fn, params)
    return vjp(hjv)[0]


def empirical_fisher_vp(apply_fn: Callable[[PyTree], jax.Array],
                        loss_of_outputs: Callable[[jax.Array], jax.Array], params: PyTree,
                        v: PyTree) -> PyTree:
    r"""Empirical-Fisher-vector product :math:`\frac1n\sum_i g_i (g_i^\top v)` (module docstring).

    ``loss_of_outputs`` must be a mean of per-example losses over the leading axis of the outputs.

    Args:
      apply_fn: ``apply_fn(params) -> outputs`` (examples first).
      loss_of_outputs: ``loss_of_outputs(outputs) -> scalar``.
      params: the point :math:`\theta`.
      v: a pytree shaped like ``params``.

    Returns:
      A pytree shaped like ``params``.
    """
    outputs, jv = jax.jvp(apply_fn, (params,), (v,))
    w = _fisher_outputs_vp(loss_of_outputs, outputs, jv)
    _, vjp = jax.vjp(apply_fn, params)
    return vjp(w)[0]


def _flat_operator(apply_fn, loss_of_outputs, params, operator):
    if operator not in OPERATORS:
        raise ValueError(f"unknown operator {operator!r}; valid: {', '.join(OPERATORS)}.")
    flat, unravel = ravel_pytree(params)
    outputs, jvp_fn = jax.linearize(apply_fn, params)
    vjp_fn = jax.linear_transpose(jvp_fn, params)
    if operator == "ggn":
        def middle(u):
            return output_hessian_vp(loss_of_outputs, outputs, u)
    else:
        r = _per_example_residuals(loss_of_outputs, outputs)
        axes = tuple(range(1, r.ndim))

        def middle(u):
            return r * jnp.sum(r * u, axis=axes, keepdims=True) / r.shape[0]

    def matvec(vec: jax.Array) -> jax.Array:
        u = jvp_fn(unravel(vec))
        return ravel_pytree(vjp_fn(middle(u).astype(u.dtype))[0])[0]

    return matvec, flat, unravel


def flat_ggn(apply_fn: Callable[[PyTree], jax.Array], loss_of_outputs: Callable, params: PyTree):
    """Return ``(matvec, flat_params, unravel)``: the GGN as an operator on flat vectors.

    The network is linearized once at ``params`` (``jax.linearize`` + ``jax.linear_transpose``), so
    repeated matvecs (an eigensolver loop) reuse the primal pass. Same contract as ``flat_hvp``: pass
    ``matvec`` to ``eigsh_top_k`` or ``trace_estimate``.
    """
    return _flat_operator(apply_fn, loss_of_outputs, params, "ggn")


def flat_empirical_fisher(apply_fn: Callable[[PyTree], jax.Array], loss_of_outputs: Callable,
                          params: PyTree):
    """Return ``(matvec, flat_params, unravel)``: the empirical Fisher on flat vectors (see
    :func:`flat_ggn`)."""
    return _flat_operator(apply_fn, loss_of_outputs, params, "empirical_fisher")


def ggn_top_eigenvalues(apply_fn: Callable[[PyTree], jax.Array], loss_of_outputs: Callable,
                        params: PyTree, k: int = 1, *, key: jax.Array,
                        operator: str = "ggn", method: str = "lanczos", tol: float = 1e-5,
                        max_iters: int = 500, init: PyTree | None = None,
                        ncv: int | None = None) -> TopKResult:
    r"""Top-k eigenpairs of the GGN (``operator="ggn"``) or the empirical Fisher
    (``"empirical_fisher"``), the analogue of :func:`~dynamics.curvature.topk.top_eigenvalues`.

    ``values[0]`` is the *GGN sharpness* :math:`\lambda_{\max}(G) \ge 0`. Call it inside ``jax.jit``
    with the data passed as jit arguments; ``k``, ``operator``, ``method``, ``max_iters`` and ``ncv``
    are static.

    Args:
      apply_fn: ``apply_fn(params) -> outputs`` (examples first).
      loss_of_outputs: ``loss_of_outputs(outputs) -> scalar`` (an :class:`OutputLoss` for the
        closed forms).
      params: the point at which the operator is taken.
      k: number of eigenpairs.
      key: PRNG key for the random start.
      operator: ``"ggn"`` or ``"empirical_fisher"``.
      method: ``"lanczos"``, ``"power"`` or ``"lobpcg"``.
      tol: relative residual tolerance (as ``top_eigenvalues``).
      max_iters: maximum number of matvecs.
      init: warm start (previous ``vectors``).
      ncv: Lanczos basis size before a restart.

    Returns:
      ``TopKResult`` with ``vectors`` shaped like ``params`` with a leading axis ``k``.
    """
    matvec, _, unravel = _flat_operator(apply_fn, loss_of_outputs, params, operator)
    V0 = initial_block(params, k, key, init)
    res = eigsh_top_k(matvec, V0, method=method, tol=tol, max_iters=max_iters, ncv=ncv)
    return res._replace(vectors=jax.vmap(unravel)(res.vectors))


def ggn_trace(apply_fn: Callable[[PyTree], jax.Array], loss_of_outputs: Callable, params: PyTree,
              *, key: jax.Array, num_samples: int = 100, operator: str = "ggn",
              method: str = "hutchinson", batch_size: int | None = None) -> TraceEstimate:
    r"""Stochastic trace of the GGN or the empirical Fisher with its standard error.

    For the empirical Fisher the exact value is :math:`\frac1n\sum_i\|g_i\|^2`; for the GGN of MSE it
    is :math:`\|J\|_F^2/n`. See :func:`~dynamics.curvature.trace.trace_estimate` for the estimators.
    """
    matvec, flat, _ = _flat_operator(apply_fn, loss_of_outputs, params, operator)
    return trace_estimate(matvec, flat.shape[0], flat.dtype, key=key, num_samples=num_samples,
                          method=method, batch_size=batch_size)
