"""Which parameter leaves of a network enter it as dense kernels or biases, found on its jaxpr, for
the structured eNTK (:mod:`dynamics.ntk.structured`).

``plan(apply_fn, params, x)`` traces ``apply_fn`` at one example (calls to ``jax.jit`` functions
inlined) and returns a :class:`Plan`: per leaf, the :class:`Rule` (dense kernel: one operand of a
``dot_general`` without batch dimensions, reached through shape operations that permute its
entries; bias: one operand of an ``add``/``sub``, reached through a broadcast) or a fallback.
``interpret`` evaluates the jaxpr with zero perturbations added to chosen outputs, so that their
cotangents come from one VJP; ``forward_flops`` is the flop model of a jaxpr used to choose a method.
"""

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from math import prod

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr, Literal, Var, jaxprs_in_params

PyTree = object

_SHAPE_OPS = frozenset({"reshape", "broadcast_in_dim", "transpose", "squeeze",
                        "convert_element_type", "copy", "copy_p"})
_ADDS = frozenset({"add", "add_any", "sub"})
_INLINED = frozenset({"jit", "pjit", "closed_call", "core_call"})


@dataclass(frozen=True)
class Rule:
    """How one structured leaf enters: through the cotangent ``cot`` and an activation (or ones).

    ``rows`` / ``feats`` are the axes of the cotangent point that pair with the activation's rows
    (summed against them) and with the leaf's own entries. ``act`` indexes the kept activations
    (``None`` for a bias); ``act_rows`` / ``act_contract`` are the activation's row and contracted
    axes (``act_rows`` in the order of ``rows``).
    """

    leaf: int
    cot: int
    rows: tuple[int, ...]
    feats: tuple[int, ...]
    act: int | None = None
    act_rows: tuple[int, ...] = ()
    act_contract: tuple[int, ...] = ()


@dataclass(frozen=True)
class Plan:
    """What :func:`plan` found in ``apply_fn``: the flat jaxpr, its cotangent points and rules.

    ``fallback`` lists the leaves (indices into ``jax.tree.leaves(params)``) that no rule covers;
    leaves that the output does not use at all are in neither list (they contribute nothing).
    """

    jaxpr: ClosedJaxpr
    num_param_leaves: int
    cots: tuple[Var, ...]
    acts: tuple[object, ...]
    rules: tuple[Rule, ...]
    fallback: tuple[int, ...]

    def rule_rows(self, rule: Rule) -> int:
        shape = self.cots[rule.cot].aval.shape
        return prod(shape[d] for d in rule.rows)

    def gram_groups(self) -> dict[int, list[Rule]]:
        """Rules with one row per example, by cotangent point (one Gram per point)."""
        groups = defaultdict(list)
        for rule in self.rules:
            if self.rule_rows(rule) == 1:
                groups[rule.cot].append(rule)
        return dict(groups)

    def row_rules(self) -> list[Rule]:
        """Rules with several rows per example (their Jacobian is formed from the factors)."""
        return [rule for rule in self.rules if self.rule_rows(rule) > 1]


def interpret(jaxpr, consts, args, bump: dict | None = None, keep: Sequence = ()):
    """Evaluate ``jaxpr``, calls to jitted functions inlined, adding ``bump[v]`` to each var ``v``.

    Returns ``(outputs, kept)`` with ``kept`` the values of the atoms in ``keep``.
    """
    env = {}

    def read(atom):
        return atom.val if isinstance(atom, Literal) else env[atom]

    def write(var, value):
        if bump is not None and var in bump:
            value = value + bump[var]
        env[var] = value

    for var, value in zip(jaxpr.constvars, consts):
        write(var, value)
    for var, value in zip(jaxpr.invars, args):
        write(var, value)
    for eqn in jaxpr.eqns:
        invals = [read(a) for a in eqn.invars]
        if eqn.primitive.name in _INLINED and isinstance(eqn.params.get("jaxpr"), ClosedJaxpr):
            sub = eqn.params["jaxpr"]
            outs = interpret(sub.jaxpr, sub.consts, invals)[0]
        else:
            with eqn.ctx.manager:
                outs = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
            if not eqn.primitive.multiple_results:
                outs = [outs]
        for var, value in zip(eqn.outvars, outs):
            write(var, value)
    return [read(v) for v in jaxpr.outvars], [read(a) for a in keep]


def _spec(a) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a))


def _one(x: PyTree) -> PyTree:
    """Specs of one example (leading axis 1) of the inputs ``x``."""
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct((1,) + jnp.shape(a)[1:], jnp.result_type(a)),
                        x)


def _move(eqn, index: np.ndarray) -> np.ndarray:
    """Apply a shape operation to an array of leaf positions (which entry ends up where)."""
    name, p = eqn.primitive.name, eqn.params
    if name == "reshape":
        if p.get("dimensions") is not None:
            index = np.transpose(index, p["dimensions"])
        return index.reshape(p["new_sizes"])
    if name == "broadcast_in_dim":
        shape, dims = tuple(p["shape"]), tuple(p["broadcast_dimensions"])
        expanded = [1] * len(shape)
        for axis, d in enumerate(dims):
            expanded[d] = index.shape[axis]
        return np.broadcast_to(index.reshape(expanded), shape)
    if name == "transpose":
        return np.transpose(index, p["permutation"])
    if name == "squeeze":
        return np.squeeze(index, axis=tuple(p["dimensions"]))
    return index  # convert_element_type, copy


def _is_permutation(index: np.ndarray, size: int) -> bool:
    return index.size == size and np.array_equal(np.sort(index.ravel()), np.arange(size))


class _Uses:
    """Consumers of every variable of a flat jaxpr (an output counts as a use)."""

    def __init__(self, jaxpr):
        self.by_var = defaultdict(list)
        for eqn in jaxpr.eqns:
            for pos, atom in enumerate(eqn.invars):
                if isinstance(atom, Var):
                    self.by_var[atom].append((eqn, pos))
        self.outputs = {v for v in jaxpr.outvars if isinstance(v, Var)}

    def count(self, var) -> int:
        return len(self.by_var[var]) + (var in self.outputs)

    def single(self, var):
        """The only ``(eqn, operand position)`` consuming ``var``, or ``None``."""
        if var in self.outputs or len(self.by_var[var]) != 1:
            return None
        return self.by_var[var][0]


def _canonical(var, uses: _Uses):
    """Follow a single-use var through same-shape additions: their cotangents are equal (up to sign)."""
    while (use := uses.single(var)) is not None:
        eqn, _ = use
        out = eqn.outvars[0]
        if (eqn.primitive.name not in _ADDS | {"convert_element_type"}
                or out.aval.shape != var.aval.shape
                or not jnp.issubdtype(out.aval.dtype, jnp.inexact)):
            break
        var = out
    return var


def _dense(eqn, pos, index, size):
    """``(rows, feats, act atom, act rows, act contract)`` of a dense use, or ``None``."""
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    if lb or rb or not _is_permutation(index, size):
        return None
    lhs, rhs = eqn.invars
    lfree = [d for d in range(len(lhs.aval.shape)) if d not in lc]
    rfree = [d for d in range(len(rhs.aval.shape)) if d not in rc]
    n_l, n_r = len(lfree), len(rfree)
    if pos == 1:  # z = X W: rows first, then the leaf's free axes
        rows, feats = tuple(range(n_l)), tuple(range(n_l, n_l + n_r))
        return rows, feats, lhs, tuple(lfree), tuple(lc)
    rows, feats = tuple(range(n_l, n_l + n_r)), tuple(range(n_l))  # z = W X
    return rows, feats, rhs, tuple(rfree), tuple(rc)


def _bias(eqn, var, index, size):
    """``(rows, feats)`` of a leaf broadcast along ``rows`` into an addition, or ``None``."""
    shape = eqn.outvars[0].aval.shape
    if var.aval.shape != shape:  # a scalar, or size-1 axes, broadcast by the addition itself
        if len(var.aval.shape) not in (0, len(shape)):
            return None
        index = np.broadcast_to(index, shape)
    rows = tuple(d for d in range(index.ndim) if np.all(index == index.take([0], axis=d)))
    feats = tuple(d for d in range(index.ndim) if d not in rows)
    core = index[tuple(0 if d in rows else slice(None) for d in range(index.ndim))]
    if not _is_permutation(core, size):
        return None
    return rows, feats


def _match(var, uses: _Uses):
    """``(cot var, rows, feats, act atom or None, act rows, act contract)`` for a leaf, or ``None``."""
    if not jnp.issubdtype(var.aval.dtype, jnp.inexact):
        return None
    size = prod(var.aval.shape)
    index = np.arange(size).reshape(var.aval.shape)
    end = var
    while ((use := uses.single(end)) is not None and use[0].primitive.name in _SHAPE_OPS
           and use[1] == 0):
        index = _move(use[0], index)
        end = use[0].outvars[0]
    if use is None:
        return None
    eqn, pos = use
    if eqn.primitive.name == "dot_general":
        found = _dense(eqn, pos, index, size)
    elif eqn.primitive.name in _ADDS:
        found = _bias(eqn, end, index, size)
        if found is not None:
            found = (*found, None, (), ())  # no activation: ones
    else:
        found = None
    cot = _canonical(eqn.outvars[0], uses)
    if found is None or not jnp.issubdtype(cot.aval.dtype, jnp.inexact):
        return None
    return (cot,) + tuple(found)


def plan(apply_fn: Callable, params: PyTree, x: PyTree) -> Plan:
    """Trace ``apply_fn`` at one example of ``x`` and find the structured leaves of ``params``.

    Works on tracers (only shapes and dtypes are used).
    """
    p_spec = jax.tree.map(_spec, params)
    closed = jax.make_jaxpr(lambda p, xs: apply_fn(p, xs))(p_spec, _one(x))
    specs = jax.tree.leaves((p_spec, _one(x)))
    flat = jax.make_jaxpr(lambda *a: interpret(closed.jaxpr, closed.consts, a)[0])(*specs)
    jaxpr = flat.jaxpr
    num_leaves = len(jax.tree.leaves(p_spec))
    uses = _Uses(jaxpr)
    cots, acts, rules, fallback = [], [], [], []

    def slot(items, item):
        for k, existing in enumerate(items):
            if existing is item:
                return k
        items.append(item)
        return len(items) - 1

    for leaf, var in enumerate(jaxpr.invars[:num_leaves]):
        if uses.count(var) == 0:
            continue  # the output does not depend on it
        found = _match(var, uses)
        if found is None:
            fallback.append(leaf)
            continue
        cot, rows, feats, act, act_rows, act_contract = found
        rules.append(Rule(leaf, slot(cots, cot), rows, feats,
                          None if act is None else slot(acts, act), act_rows, act_contract))
    return Plan(flat, num_leaves, tuple(cots), tuple(acts), tuple(rules), tuple(fallback))


def forward_flops(jaxpr) -> float:
    """Rough flop count of a jaxpr: matmuls and convolutions exactly, one flop per other output."""
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        out = eqn.outvars[0].aval if eqn.outvars else None
        if name == "dot_general":
            (lhs_contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval
            total += 2.0 * prod(out.shape) * prod(lhs.shape[d] for d in lhs_contract)
        elif name == "conv_general_dilated":
            rhs = eqn.invars[1].aval
            rhs_spec = eqn.params["dimension_numbers"].rhs_spec  # (out feature, in feature, spatial…)
            total += 2.0 * prod(out.shape) * prod(rhs.shape[d] for d in rhs_spec[1:])
        else:
            total += sum(float(prod(getattr(v.aval, "shape", ()))) for v in eqn.outvars)
        for sub in jaxprs_in_params(eqn.params):
            total += forward_flops(sub)
    return total
