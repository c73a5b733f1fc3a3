r"""Empirical neural tangent kernels of a finite network, and the sign kernels of SignGD / Adam.

For a network :math:`f(\theta, x) \in \mathbb{R}^O` the kernels here are built from the per-example
Jacobians :math:`J_a(x) = \partial f_a(\theta, x) / \partial\theta \in \mathbb{R}^P`:

.. math::
  K_{\mathrm{SGD}}[i, j, a, b] = \langle J_a(x_i), J_b(x'_j) \rangle, \\
  K_{\mathrm{sign}}[i, j, a, b] = \langle \mathrm{sign}\,J_a(x_i),
    \mathrm{sign}\,J_b(x'_j) \rangle, \\
  K_{\mathrm{A\text{-}sign}}[i, j, a, b] = \langle J_a(x_i), \mathrm{sign}\,J_b(x'_j) \rangle.

The layout is neural-tangents' ``trace_axes=()`` layout, shape ``(N1, N2, O, O)``.
``trace_axes=(-1,)`` follows neural-tangents too: it returns the **mean** over logits,
:math:`\frac1O\sum_a K[i, j, a, a]`, shape ``(N1, N2)``; it is *not* the sum (the PyTorch
tutorial's "trace" sums).

Everything is computed per example (``vmap`` over examples of a single-example forward pass), so
``apply_fn`` must not mix examples (no train-mode BatchNorm, no cross-example dropout).

References:
  Novak, Sohl-Dickstein, Schoenholz, "Fast Finite Width Neural Tangent Kernel", ICML 2022
  (https://arxiv.org/abs/2206.08720).
  Malladi, Wettig, Yu, Chen, Arora, "A Kernel-Based View of Language Model Fine-Tuning", ICML 2023
  (https://arxiv.org/abs/2210.05643).
"""

from collections.abc import Callable, Sequence
from math import prod

import jax
import jax.numpy as jnp

from dynamics.compiled import self_compiling
from dynamics.ntk.jaxpr_plan import forward_flops
from dynamics.ntk.structured import costs as structured_costs
from dynamics.ntk.structured import plan as structured_plan
from dynamics.ntk.structured import structured_ntk

PyTree = object
ApplyFn = Callable[[PyTree, PyTree], jax.Array]

_HIGHEST = jax.lax.Precision.HIGHEST
_METHODS = ("auto", "jacobian", "ntvp", "structured")


def _num_examples(x: PyTree) -> int:
    leaves = jax.tree.leaves(x)
    if not leaves:
        raise ValueError(
            "inputs must be an array (or a pytree of arrays) with a leading example axis")
    n = leaves[0].shape[0]
    if any(leaf.shape[0] != n for leaf in leaves):
        raise ValueError("all input leaves must share the leading example axis")
    return n


def _check_trace_axes(trace_axes: Sequence[int]) -> bool:
    """Whether the logit axis is traced; only ``()`` and ``(-1,)`` (or ``(1,)``) are valid."""
    trace_axes = tuple(trace_axes)
    if trace_axes == ():
        return False
    if trace_axes in ((-1,), (1,)):
        return True
    raise ValueError(
        f"trace_axes={trace_axes!r} is not supported: use () for the full (N1, N2, O, O) kernel or "
        "(-1,) for the mean over logits, shape (N1, N2)")


def _chunk(x: PyTree, n: int, batch_size: int) -> tuple[PyTree, int]:
    """Pad the example axis to a multiple of ``batch_size`` (repeating the last example), split."""
    num_chunks = -(-n // batch_size)
    pad = num_chunks * batch_size - n

    def split(a):
        if pad:
            a = jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)], axis=0)
        return a.reshape((num_chunks, batch_size) + a.shape[1:])

    return jax.tree.map(split, x), num_chunks


def _single(apply_fn: ApplyFn) -> Callable[[PyTree, PyTree], jax.Array]:
    """``f(params, x_i) -> (O,)`` for one example, from ``apply_fn(params, x) -> (N, O)``."""

    def f(params, xi):
        out = apply_fn(params, jax.tree.map(lambda a: a[None], xi))
        if out.ndim != 2:
            raise ValueError(f"apply_fn must return shape (N, O); got {out.shape} for N = 1")
        return out[0]

    return f


def _jacobian(apply_fn: ApplyFn, params: PyTree, x: PyTree) -> list[jax.Array]:
    """Per-example Jacobians as a list of leaves, each of shape ``(N, O, P_leaf)``."""
    jac = jax.vmap(jax.jacrev(_single(apply_fn)), in_axes=(None, 0))(params, x)
    return [leaf.reshape(leaf.shape[:2] + (-1,)) for leaf in jax.tree.leaves(jac)]


def flat_jacobian(apply_fn: ApplyFn, params: PyTree, x: PyTree) -> jax.Array:
    """Per-example Jacobians ``(N, O, P)``, columns in ``jax.flatten_util.ravel_pytree(params)`` order.

    ``J₁ J₂ᵀ`` (contracting P) is the eNTK, ``f₀ + J (θ − θ₀)`` the linearized model: one Jacobian can
    serve several kernels of the same examples (memory N·O·P).
    """
    return jnp.concatenate(_jacobian(apply_fn, params, x), axis=-1)


def _contract(jac1: list[jax.Array], jac2: list[jax.Array]) -> jax.Array:
    """:math:`\\sum_p J_1[i, a, p] J_2[j, b, p]`, leaf by leaf, shape ``(N1, N2, O, O)``."""
    return sum(jnp.einsum("iap,jbp->ijab", a, b, precision=_HIGHEST) for a, b in zip(jac1, jac2))


def _jacobian_block(apply_fn, params, x1, x2, transform1, transform2):
    jac1 = [transform1(j) for j in _jacobian(apply_fn, params, x1)]
    jac2 = [transform2(j) for j in _jacobian(apply_fn, params, x2)]
    return _contract(jac1, jac2)


def _ntvp_block(apply_fn, params, x1, x2):
    """Kernel block by NTK-vector products: a VJP on each ``(x2_j, b)`` then one JVP on ``x1``."""
    f = _single(apply_fn)
    out = jax.eval_shape(f, params, jax.tree.map(lambda a: a[0], x2))
    basis = jnp.eye(out.shape[0], dtype=out.dtype)  # one cotangent per logit b

    def column(xj):
        _, vjp_fn = jax.vjp(lambda p: f(p, xj), params)

        def ntk_vp(ct):
            (tangent,) = vjp_fn(ct)
            jvp_one = lambda xi: jax.jvp(lambda p: f(p, xi), (params,), (tangent,))[1]  # noqa: E731
            return jax.vmap(jvp_one)(x1)  # (N1, O_a)

        return jax.vmap(ntk_vp)(basis)  # (O_b, N1, O_a)

    cols = jax.vmap(column)(x2)  # (N2, O_b, N1, O_a)
    return jnp.transpose(cols, (2, 0, 3, 1))


def _blocked(block_fn, x1, x2, batch_size):
    """Assemble the kernel from ``block_fn(x1_chunk, x2_chunk) -> (b, b, O, O)`` (nested map)."""
    n1, n2 = _num_examples(x1), _num_examples(x2)
    if batch_size is None:
        return block_fn(x1, x2)
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer or None; got {batch_size}")
    c1, m1 = _chunk(x1, n1, min(batch_size, n1))
    c2, m2 = _chunk(x2, n2, min(batch_size, n2))

    def row(x1c):
        return jax.lax.map(lambda x2c: block_fn(x1c, x2c), c2)  # (m2, b1, b2, O, O)

    blocks = jax.lax.map(row, c1)  # (m1, m2, b1, b2, O, O)
    b1, b2 = blocks.shape[2], blocks.shape[3]
    k = jnp.transpose(blocks, (0, 2, 1, 3, 4, 5)).reshape((m1 * b1, m2 * b2) + blocks.shape[4:])
    return k[:n1, :n2]


def _finish(k: jax.Array, trace: bool) -> jax.Array:
    if trace:
        return jnp.trace(k, axis1=2, axis2=3) / k.shape[-1]
    return k


def _same_examples(x1: PyTree, x2: PyTree | None) -> bool:
    """``x2`` is ``None`` or has ``x1``'s per-example shapes and dtypes (one trace fits both)."""
    if x2 is None:
        return True
    per_example = lambda x: jax.tree.map(lambda a: (jnp.shape(a)[1:], jnp.result_type(a)), x)  # noqa: E731
    try:
        return per_example(x1) == per_example(x2)
    except Exception:
        return False


def _choose(apply_fn, params, x1, x2, batch_size):
    """``(method, plan, fallback)``: the cheapest method by the flop models of
    :func:`choose_method`, the structured plan and the method for its fallback leaves."""
    the_plan = structured_plan(apply_fn, params, x1)
    flops = max(forward_flops(the_plan.jaxpr.jaxpr), 1.0)
    num_params = sum(prod(jnp.shape(leaf)) for leaf in jax.tree.leaves(params))
    out = the_plan.jaxpr.out_avals[0]
    o = prod(out.shape[1:]) if len(out.shape) > 1 else 1
    n1 = _num_examples(x1)
    n2 = n1 if x2 is None else _num_examples(x2)
    sides = n1 if (x2 is None and batch_size is None) else n1 + n2
    found = {
        "jacobian": sides * (1 + 2 * o) * flops + 2.0 * n1 * n2 * o * o * num_params,
        "ntvp": n2 * (1 + 2 * o) * flops + 3.0 * n1 * n2 * o * flops,
    }
    fallback = None
    if _same_examples(x1, x2):
        found["structured"], fallback = structured_costs(the_plan, n1, n2, o, flops, sides)
    return min(found, key=found.get), the_plan, fallback


def choose_method(apply_fn: ApplyFn, params: PyTree, x1: PyTree, x2: PyTree | None = None, *,
                  batch_size: int | None = None) -> str:
    r"""The cheapest eNTK method for these shapes: ``"jacobian"``, ``"ntvp"`` or ``"structured"``.

    Compares flop models (Novak et al. 2022, Table 1) with ``F`` the flops of one example's forward
    pass (counted on the jaxpr of ``apply_fn``: matmuls and convolutions, plus one per elementwise
    output), ``P`` parameters, ``O`` logits and ``s`` the examples whose derivatives are computed
    (:math:`N_1 + N_2`; :math:`N_1` when ``x2`` is ``None`` and unchunked):

    - Jacobian contraction: :math:`s(1 + 2O)F + 2N_1N_2O^2P`;
    - NTK-vector products: :math:`N_2(1 + 2O)F + 3N_1N_2OF`;
    - structured products (:mod:`dynamics.ntk.structured`):
      :math:`s(1 + 2O)F + N_1N_2(2O^2 \sum_l D_l + O^2 + 2\sum_l C_l)` for dense layers and biases
      (output width :math:`D_l`, input width :math:`C_l` of the layers, one Gram per shared
      cotangent), plus the cheaper of the two above restricted to the leaves no rule covers. Only
      when ``x2`` has ``x1``'s per-example shapes.

    For an MLP structured products win: :math:`\sum_l D_l` (the widths) replaces :math:`P` (the
    squared widths) of the Jacobian contraction. For a convolutional net (:math:`F \gg P`) with few
    logits the convolution kernels fall back to the Jacobian contraction. Works on tracers too
    (only shapes are used).
    """
    return _choose(apply_fn, params, x1, x2, batch_size)[0]


def _one_example(arguments):
    """``apply_fn`` is only ever called on one example at a time (``_single``): trace it there."""
    one = lambda a: jax.ShapeDtypeStruct((1,) + jnp.shape(a)[1:], jnp.result_type(a))  # noqa: E731
    return arguments["params"], jax.tree.map(one, arguments["x1"])


def _x2_differs(arguments) -> bool:
    """``x2``'s examples are shaped unlike ``x1``'s: the hoisted ``apply_fn`` would not fit them."""
    return not _same_examples(arguments["x1"], arguments["x2"])


@self_compiling(static=("method", "trace_axes", "batch_size"), example=_one_example,
                use_raw=_x2_differs)
def empirical_ntk(apply_fn: ApplyFn, params: PyTree, x1: PyTree, x2: PyTree | None = None, *,
                  method: str = "auto", trace_axes: Sequence[int] = (),
                  batch_size: int | None = None) -> jax.Array:
    r"""Empirical neural tangent kernel of ``apply_fn`` at ``params``.

    .. math::
      K[i, j, a, b] = \langle \partial_\theta f_a(x_i), \partial_\theta f_b(x'_j) \rangle,
      K(x, x') = J(x)\, J(x')^\top, \qquad J(x) = \frac{\partial f(\theta, x)}{\partial \theta}
      \in \mathbb{R}^{O \times P}.

    Three implementations give the same numbers (to round-off); ``method="auto"`` (the default)
    picks the cheapest for the shapes (:func:`choose_method`):

    - ``"jacobian"`` (Jacobian contraction): per-example reverse-mode Jacobians of both sides,
      contracted leaf by leaf. Time :math:`\approx N O\,[\mathrm{FP}] + N_1 N_2 O^2 P`; memory
      :math:`N O P` per side.
    - ``"ntvp"`` (NTK-vector products): for every :math:`(x'_j, b)` a VJP gives the tangent
      :math:`J_b(x'_j)^\top`, then a JVP on the :math:`x` side gives the column
      :math:`K[:, j, :, b]`. Time :math:`\approx N_2 O (N_1 + 1)\,[\mathrm{FP}]`; no
      :math:`N^2 O^2 P` contraction, so it wins when :math:`O P` dominates the forward pass (wide
      MLPs, many logits).
    - ``"structured"`` (:mod:`dynamics.ntk.structured`): a dense kernel :math:`W` (one operand
      of a ``dot_general``) contributes :math:`\langle X_i, X'_j\rangle\langle\delta_{i,a},
      \delta'_{j,b}\rangle` (layer input times output cotangent), a bias
      :math:`\langle\delta_{i,a}, \delta'_{j,b}\rangle`; time :math:`\approx N O\,[\mathrm{FP}]
      + N_1 N_2 O^2 \sum_l D_l` (layer widths instead of :math:`P`). Leaves no rule covers (convolution
      kernels, embeddings, shared weights) fall back to the Jacobian contraction or NTK-vector
      products for those leaves only. Needs ``x2`` with ``x1``'s per-example shapes.

    With ``batch_size`` the kernel is assembled block by block (``batch_size`` examples per side per
    block, nested ``lax.map``), so peak memory is that of one block, about
    :math:`2\,\mathrm{batch\_size}\cdot O P` floats, independent of :math:`N`. The ``x2`` side is
    then recomputed once per ``x1`` block (a cost small next to the contraction when
    ``batch_size`` ≫ 3).

    Args:
      apply_fn: ``apply_fn(params, x) -> (N, O)``; must treat examples independently.
      params: parameter pytree :math:`\theta`.
      x1: inputs with a leading example axis ``N1`` (an array or a pytree of arrays).
      x2: inputs with leading axis ``N2``; ``None`` means ``x1`` (the Jacobian is then computed once
        when ``batch_size`` is ``None``).
      method: ``"auto"`` (default), ``"jacobian"``, ``"ntvp"`` or ``"structured"``.
      trace_axes: ``()`` for the full kernel; ``(-1,)`` for neural-tangents' convention, the
        **mean** over logits :math:`\frac1O \sum_a K[i, j, a, a]` (not the sum).
      batch_size: examples per block, or ``None`` for a single block.

    Compiles itself (:mod:`dynamics.compiled`): a call with concrete arrays runs a cached jitted
    kernel, with the arrays ``apply_fn`` closes over passed as arguments; inside your own ``jax.jit``
    it traces inline. ``method``, ``trace_axes`` and ``batch_size`` are static.

    Returns:
      The kernel, shape ``(N1, N2, O, O)``, or ``(N1, N2)`` with ``trace_axes=(-1,)``; dtype of the
      Jacobian (float64 under ``jax.enable_x64``).
    """
    if method not in _METHODS:
        raise ValueError(f"method={method!r} is unknown; valid methods: {', '.join(_METHODS)}")
    trace = _check_trace_axes(trace_axes)
    if method in ("auto", "structured"):
        cheapest, the_plan, fallback = _choose(apply_fn, params, x1, x2, batch_size)
        if method == "auto":
            method = cheapest
        elif fallback is None:
            raise ValueError('method="structured" needs x2 with the per-example shapes and dtypes '
                             "of x1")
    if method == "structured":
        fallback = _ntvp_block if fallback == "ntvp" else None
        if x2 is None and batch_size is None:
            return _finish(structured_ntk(apply_fn, params, x1, the_plan=the_plan,
                                          fallback_block=fallback), trace)

        def block(a, b):
            return structured_ntk(apply_fn, params, a, b, the_plan=the_plan, fallback_block=fallback)
    elif method == "jacobian":
        if x2 is None and batch_size is None:
            jac = _jacobian(apply_fn, params, x1)
            return _finish(_contract(jac, jac), trace)

        def block(a, b):
            return _jacobian_block(apply_fn, params, a, b, lambda j: j, lambda j: j)
    else:
        def block(a, b):
            return _ntvp_block(apply_fn, params, a, b)
    return _finish(_blocked(block, x1, x1 if x2 is None else x2, batch_size), trace)


def sign_kernel(apply_fn: ApplyFn, params: PyTree, x1: PyTree, x2: PyTree | None = None, *,
                trace_axes: Sequence[int] = (), batch_size: int | None = None) -> jax.Array:
    r"""SignGD kernel: inner products of the signs of the per-example gradients.

    .. math::
      K[i, j, a, b] = \langle \mathrm{sign}\,\partial_\theta f_a(x_i),
      \mathrm{sign}\,\partial_\theta f_b(x'_j) \rangle.

    Symmetric and positive semi-definite; its diagonal :math:`K[i, i, a, a]` counts the non-zero
    entries of :math:`\partial_\theta f_a(x_i)` (``sign(0) = 0``). Computed by Jacobian contraction.

    Args:
      apply_fn: ``apply_fn(params, x) -> (N, O)``; must treat examples independently.
      params: parameter pytree.
      x1: inputs with leading axis ``N1``.
      x2: inputs with leading axis ``N2``, or ``None`` for ``x1``.
      trace_axes: ``()`` or ``(-1,)`` (mean over logits, as in :func:`empirical_ntk`).
      batch_size: examples per block, or ``None`` for a single block.

    Returns:
      The kernel, shape ``(N1, N2, O, O)`` or ``(N1, N2)``.
    """
    trace = _check_trace_axes(trace_axes)

    def block(a, b):
        return _jacobian_block(apply_fn, params, a, b, jnp.sign, jnp.sign)

    return _finish(_blocked(block, x1, x1 if x2 is None else x2, batch_size), trace)


def asymmetric_sign_kernel(apply_fn: ApplyFn, params: PyTree, x_eval: PyTree,
                           x_train: PyTree | None = None, *, trace_axes: Sequence[int] = (),
                           batch_size: int | None = None) -> jax.Array:
    r"""Asymmetric SignGD (A-SignGD) kernel: the sign on the training point's gradient only.

    .. math::
      K[i, j, a, b] = \langle \partial_\theta f_a(x_i),
      \mathrm{sign}\,\partial_\theta f_b(x^{\mathrm{train}}_j) \rangle.

    The sign goes on the **training** point, the one whose gradient makes the update: one SignGD
    step :math:`\theta_1 = \theta_0 - \eta\,\mathrm{sign}\,\nabla_\theta f_b(x^{\mathrm{train}}_j)`
    changes the evaluation output by
    :math:`f_a(x_i; \theta_1) - f_a(x_i; \theta_0) = -\eta K[i, j, a, b] + O(\eta^2)`.
    Adam's first (bias-corrected, :math:`\varepsilon \to 0`) step is exactly such a sign step. The
    kernel is not symmetric; :math:`K[i, i, a, a] = \|\partial_\theta f_a(x_i)\|_1`, and scaling
    :math:`f` by :math:`c > 0` scales it by :math:`c` (the SGD kernel scales by :math:`c^2`).

    Args:
      apply_fn: ``apply_fn(params, x) -> (N, O)``; must treat examples independently.
      params: parameter pytree.
      x_eval: evaluation inputs (unsigned gradients), leading axis ``N1``.
      x_train: training inputs (signed gradients), leading axis ``N2``; ``None`` for ``x_eval``.
      trace_axes: ``()`` or ``(-1,)`` (mean over logits, as in :func:`empirical_ntk`).
      batch_size: examples per block, or ``None`` for a single block.

    Returns:
      The kernel, shape ``(N1, N2, O, O)`` or ``(N1, N2)``.
    """
    trace = _check_trace_axes(trace_axes)

    def block(a, b):
        return _jacobian_block(apply_fn, params, a, b, lambda j: j, jnp.sign)

    x_train = x_eval if x_train is None else x_train
    return _finish(_blocked(block, x_eval, x_train, batch_size), trace)
