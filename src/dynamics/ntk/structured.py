r"""Structured empirical NTK: per-layer Gram products instead of per-example Jacobians.

A parameter leaf :math:`W` that enters the network once, as one operand of a ``dot_general``
(a dense kernel, :math:`z = x W`), has the per-example Jacobian

.. math::
  \frac{\partial f_a(x_i)}{\partial W} = X_i^\top \delta_{i,a}, \qquad
  X_i = \text{the other operand}, \quad \delta_{i,a} = \frac{\partial f_a(x_i)}{\partial z},

so its contribution to the kernel needs neither :math:`J` nor an :math:`N_1 N_2 O^2 P` contraction:

.. math::
  K_W[i, j, a, b] = \langle X_i, X'_j \rangle \, \langle \delta_{i,a}, \delta'_{j,b} \rangle
  \qquad (\text{one row per example: } X_i \in \mathbb{R}^{1 \times C}).

A leaf added by broadcasting (a bias, :math:`y = z + \mathrm{broadcast}(b)`) contributes
:math:`\langle \delta_{i,a}, \delta'_{j,b} \rangle` (the same with :math:`X = 1`). When a dense
output only feeds such an addition, both leaves share the cotangent and one Gram serves both:
:math:`K_{W,b} = (\langle X_i, X'_j \rangle + 1) \langle \delta_{i,a}, \delta'_{j,b} \rangle`.

The recognition is model-agnostic. ``apply_fn`` is traced at one example to a jaxpr (calls to
``jax.jit`` functions inlined); a parameter leaf is *structured* when its only use is a chain of
shape operations (``reshape``, ``broadcast_in_dim``, ``transpose``, ``squeeze``,
``convert_element_type``, ``copy``) ending in

- one operand of a ``dot_general`` without batch dimensions, the chain a permutation of the
  leaf's entries (a dense kernel, also written ``x @ W.T`` or as an ``einsum``), or
- one operand of an ``add`` / ``sub``, the chain a broadcast of the leaf along some axes (a bias).

The cotangents :math:`\delta` are those of zero perturbations added to the outputs of these
equations, :math:`O` VJPs per example (batched); the activations :math:`X` are read off the same
forward pass. Every other leaf (a convolution kernel, an embedding table, a parameter used twice,
a scale multiplied in, a batched ``dot_general``) *falls back* to the exact Jacobian contraction
for that leaf only (its gradients come from the same VJPs) or to NTK-vector products restricted to
those leaves, so the kernel is exact for every model.

When the activation has more than one row per example (a sequence: :math:`X_i \in
\mathbb{R}^{T \times C}`), the Gram form costs :math:`T^2` per pair; such leaves form their
per-example Jacobian :math:`X_i^\top \delta_{i,a}` from the two factors instead (still without a
reverse pass per parameter) and are contracted like the Jacobian method.

Cost (flops) with :math:`F` the forward flops of one example, :math:`s` examples on which the
factors are computed (:math:`N_1 + N_2`, or :math:`N_1` for the kernel of ``x1`` with itself):
factors :math:`s(1 + 2O)F`; per shared cotangent with :math:`D` entries and rows of width
:math:`C_u` (one per leaf that shares it) :math:`N_1 N_2 (2 O^2 D + O^2 + 2 \sum_u C_u)`; per
row-wise leaf :math:`2 s O T C D + 2 N_1 N_2 O^2 C D`; fallback leaves (:math:`P_{fb}`
parameters) :math:`2 N_1 N_2 O^2 P_{fb}` (Jacobian) or :math:`N_2(1 + 2O)F + 3 N_1 N_2 O F`
(NTK-vector products), the cheaper. For an MLP the Gram terms sum to
:math:`2 N_1 N_2 O^2 \sum_l d_l` (layer widths) instead of :math:`2 N_1 N_2 O^2 P`.

References:
  Novak, Sohl-Dickstein, Schoenholz, "Fast Finite Width Neural Tangent Kernel", ICML 2022
  (https://arxiv.org/abs/2206.08720), Section 4 ("structured derivatives").
"""


from collections.abc import Callable, Sequence
from math import prod

import jax
import jax.numpy as jnp

from dynamics.ntk.jaxpr_plan import Plan, Rule, interpret, plan

PyTree = object
_HIGHEST = jax.lax.Precision.HIGHEST


def _factors(the_plan: Plan, params: PyTree, x: PyTree, grads_of: Sequence[int]):
    """Per-example activations, cotangents and the gradients of the leaves ``grads_of``.

    Returns ``(acts, deltas, grads)``: ``acts[k]`` of shape ``(N,) + act shape``, ``deltas[c]`` of
    shape ``(N, O) + cot shape`` and ``grads[m]`` of shape ``(N, O) + leaf shape``.
    """
    leaves = jax.tree.leaves(params)
    closed = the_plan.jaxpr
    zeros = [jnp.zeros(v.aval.shape, v.aval.dtype) for v in the_plan.cots]

    def one(xi):
        inputs = leaves + [a[None] for a in jax.tree.leaves(xi)]

        def f(sub, eps):
            args = list(inputs)
            for k, value in zip(grads_of, sub):
                args[k] = value
            (out,), kept = interpret(closed.jaxpr, closed.consts, args,
                                     bump=dict(zip(the_plan.cots, eps)), keep=the_plan.acts)
            if out.ndim != 2:
                raise ValueError(f"apply_fn must return shape (N, O); got {out.shape} for N = 1")
            return out[0], kept

        out, vjp_fn, kept = jax.vjp(f, [leaves[k] for k in grads_of], zeros, has_aux=True)
        grads, deltas = jax.vmap(vjp_fn)(jnp.eye(out.shape[0], dtype=out.dtype))
        return kept, deltas, grads

    return jax.vmap(one)(x)


def _gram(a: jax.Array, b: jax.Array, o: int) -> jax.Array:
    """:math:`\\langle a_{i,a}, b_{j,b}\\rangle` for ``a (N1, O, ...)``, ``b (N2, O, ...)``: ``(N1, N2, O, O)``."""
    n1, n2 = a.shape[0], b.shape[0]
    g = jnp.dot(a.reshape(n1 * o, -1), b.reshape(n2 * o, -1).T, precision=_HIGHEST)
    return jnp.transpose(g.reshape(n1, o, n2, o), (0, 2, 1, 3))


def _act_gram(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.dot(a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1).T, precision=_HIGHEST)


def _row_jacobian(the_plan: Plan, rule: Rule, acts, deltas) -> jax.Array:
    """Per-example Jacobian of a row-wise leaf from its factors, ``(N, O, C·D)`` (or ``(N, O, D)``)."""
    d = deltas[rule.cot]
    n, o = d.shape[:2]
    shape = the_plan.cots[rule.cot].aval.shape
    t = prod(shape[k] for k in rule.rows)
    d = jnp.transpose(d, (0, 1) + tuple(2 + k for k in rule.rows + rule.feats)).reshape(n, o, t, -1)
    if rule.act is None:
        return jnp.sum(d, axis=2)
    x = acts[rule.act]
    x = jnp.transpose(x, (0,) + tuple(1 + k for k in rule.act_rows + rule.act_contract))
    x = x.reshape(n, t, -1)
    return jnp.einsum("ntc,natf->nacf", x, d, precision=_HIGHEST).reshape(n, o, -1)


def structured_ntk(apply_fn: Callable, params: PyTree, x1: PyTree, x2: PyTree | None = None, *,
                   the_plan: Plan | None = None,
                   fallback_block: Callable | None = None) -> jax.Array:
    r"""Empirical NTK ``(N1, N2, O, O)`` by structured products (see the module docstring).

    Args:
      apply_fn: ``apply_fn(params, x) -> (N, O)``; must treat examples independently.
      params: parameter pytree.
      x1: inputs with a leading example axis ``N1``.
      x2: inputs with leading axis ``N2`` and the per-example shapes of ``x1``; ``None`` means
        ``x1`` (the factors are then computed once).
      the_plan: a :func:`plan` of ``apply_fn`` at these shapes (traced here if ``None``).
      fallback_block: ``fallback_block(g, sub_params, x1, x2) -> (N1, N2, O, O)``, the kernel of
        the fallback leaves alone (``g(sub, x)`` is ``apply_fn`` with those leaves replaced);
        ``None`` contracts their per-example Jacobians, computed with the cotangents.
    """
    the_plan = plan(apply_fn, params, x1) if the_plan is None else the_plan
    jac_leaves = () if fallback_block is not None else the_plan.fallback
    side1 = _factors(the_plan, params, x1, jac_leaves)
    side2 = side1 if x2 is None else _factors(the_plan, params, x2, jac_leaves)
    acts1, deltas1, grads1 = side1
    acts2, deltas2, grads2 = side2
    out = the_plan.jaxpr.out_avals[0]
    o = out.shape[-1]
    n1 = jax.tree.leaves(x1)[0].shape[0]
    n2 = n1 if x2 is None else jax.tree.leaves(x2)[0].shape[0]
    k = jnp.zeros((n1, n2, o, o), out.dtype)

    for c, group in the_plan.gram_groups().items():
        weight = sum(1.0 if r.act is None else _act_gram(acts1[r.act], acts2[r.act])
                     for r in group)
        g = _gram(deltas1[c], deltas2[c], o)
        k = k + (weight[:, :, None, None] * g if jnp.ndim(weight) else weight * g)
    for rule in the_plan.row_rules():
        k = k + _gram(_row_jacobian(the_plan, rule, acts1, deltas1),
                      _row_jacobian(the_plan, rule, acts2, deltas2), o)
    for a, b in zip(grads1, grads2):
        k = k + _gram(a, b, o)
    if fallback_block is not None and the_plan.fallback:
        leaves, treedef = jax.tree.flatten(params)

        def sub_apply(sub, xs):
            full = list(leaves)
            for i, value in zip(the_plan.fallback, sub):
                full[i] = value
            return apply_fn(jax.tree.unflatten(treedef, full), xs)

        sub = [leaves[i] for i in the_plan.fallback]
        k = k + fallback_block(sub_apply, sub, x1, x1 if x2 is None else x2)
    return k


def costs(the_plan: Plan, n1: int, n2: int, o: int, flops: float,
          sides: int) -> tuple[float, str]:
    """Flop model of :func:`structured_ntk`: ``(flops, "jacobian" | "ntvp" for the fallback)``.

    ``flops`` is one example's forward pass, ``sides`` the number of examples the factors are
    computed on. See the module docstring for the terms.
    """
    total = sides * (1 + 2 * o) * flops
    for c, group in the_plan.gram_groups().items():
        d = prod(the_plan.cots[c].aval.shape)
        widths = sum(prod(the_plan.acts[r.act].aval.shape) for r in group if r.act is not None)
        total += n1 * n2 * (2.0 * o * o * d + o * o + 2.0 * widths)
    for rule in the_plan.row_rules():
        shape = the_plan.cots[rule.cot].aval.shape
        t = the_plan.rule_rows(rule)
        d = prod(shape[k] for k in rule.feats)
        width = 1 if rule.act is None else prod(the_plan.acts[rule.act].aval.shape) // t
        total += 2.0 * sides * o * t * width * d + 2.0 * n1 * n2 * o * o * width * d
    p_fb = sum(prod(the_plan.jaxpr.jaxpr.invars[i].aval.shape) for i in the_plan.fallback)
    if not p_fb:
        return total, "jacobian"
    jacobian = 2.0 * n1 * n2 * o * o * p_fb
    ntvp = n2 * (1 + 2 * o) * flops + 3.0 * n1 * n2 * o * flops
    return total + min(jacobian, ntvp), ("ntvp" if ntvp < jacobian else "jacobian")
