r"""Eigenvalue tracking along a trajectory: warm-started top-k solves whose k grows by itself.

Along an optimizer's (or a flow's) trajectory the top eigenvectors of the Hessian (or of the
preconditioned :math:`P^{-1/2}HP^{-1/2}`) move slowly, so each solve starts from the previous block.
:class:`EigenTracker` follows the central-flows reference (``WarmStartEigSolver``): after each solve,
while the smallest tracked eigenvalue is at least ``fraction * threshold`` (1.5/η for GD, 1.5 in
effective units) and fewer than ``k_max`` are tracked, one random direction is appended and the block is
re-solved; the block never shrinks. Each returned vector's sign is aligned with the previous vector of
the same rank (:math:`\langle v_i^{new}, v_i^{old}\rangle \ge 0`), so projections of a trajectory onto
:math:`v_i` are continuous while the ranks do not swap. Matvecs (HVPs) are counted, growth re-solves
included.

The solves use :func:`dynamics.curvature.topk.eigsh_top_k` (``"lanczos"``, ``"lobpcg"`` or ``"power"``)
with its relative tolerance ``‖Av − λv‖ ≤ tol · max|λ|``. Shapes are static per ``k``: one compilation
per tracked count, driven from Python (a few in a run).
"""

from collections.abc import Callable
from functools import lru_cache, partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from dynamics.curvature.hvp import flat_hvp
from dynamics.curvature.topk import eigsh_top_k

PyTree = object
MatvecFn = Callable[[PyTree, jax.Array], jax.Array]


class TrackedEigs(NamedTuple):
    """Tracked top eigenpairs (flat vectors, rows).

    Attributes:
      values: ``(k,)`` eigenvalues, descending.
      vectors: ``(k, n)`` orthonormal rows, signs aligned with the previous call's rows.
      residuals: ``(k,)`` relative residuals ``‖Av_i − λ_i v_i‖ / max_j |λ_j|``.
      num_matvecs: matvecs spent by this call (growth re-solves included), a Python int.
      converged: whether the last solve converged, a Python bool.
    """

    values: jax.Array
    vectors: jax.Array
    residuals: jax.Array
    num_matvecs: int
    converged: bool


def align_signs(V: jax.Array, V_ref: jax.Array) -> jax.Array:
    """Flip rows of ``V`` ``(k, n)`` so that ``⟨V_i, V_ref_i⟩ ≥ 0`` for the first ``min(k, k_ref)`` rows."""
    m = min(V.shape[0], V_ref.shape[0])
    dots = jnp.sum(V[:m] * V_ref[:m], axis=1)
    signs = jnp.where(dots < 0, -1.0, 1.0).astype(V.dtype)
    return V.at[:m].multiply(signs[:, None])


def rayleigh_ritz(matvec: Callable[[jax.Array], jax.Array], V: jax.Array):
    r"""Rayleigh–Ritz on the span of the rows of ``V`` ``(k, n)`` (orthonormal): ``k`` matvecs.

    Returns ``(values (k,) descending, vectors (k, n), AV (k, n), relative_residuals (k,))`` with the
    Ritz vectors' signs aligned to ``V``'s rows.
    """
    W = jax.vmap(matvec)(V)
    T = V @ W.T
    theta, S = jnp.linalg.eigh(0.5 * (T + T.T))
    theta, S = theta[::-1], S[:, ::-1]
    Y, AY = S.T @ V, S.T @ W
    signs = jnp.where(jnp.sum(Y * V, axis=1) < 0, -1.0, 1.0).astype(V.dtype)
    Y, AY = Y * signs[:, None], AY * signs[:, None]
    res = jnp.linalg.norm(AY - theta[:, None] * Y, axis=1)
    scale = jnp.maximum(jnp.max(jnp.abs(theta)), jnp.finfo(V.dtype).tiny)
    return theta, Y, AY, res / scale


def hessian_matvec(loss_fn: Callable[[PyTree, PyTree], jax.Array]) -> MatvecFn:
    r"""``matvec_fn((params, data, scale), v) = s ⊙ H (s ⊙ v)`` on flat vectors, for :class:`EigenTracker`.

    ``H`` is the Hessian of ``loss_fn(params, data)`` in ``params`` (a pytree or a flat vector); ``scale``
    is ``None`` (plain Hessian) or a flat vector :math:`s = \mathrm{diag}(P)^{-1/2}` (the symmetric form
    :math:`P^{-1/2} H P^{-1/2}` of the preconditioned Hessian, whose eigenvalues are those of
    :math:`P^{-1}H`).
    """

    def matvec_fn(args, v):
        params, data, scale = args
        mv = flat_hvp(lambda p: loss_fn(p, data), params)[0]
        if scale is None:
            return mv(v)
        return scale * mv(scale * v)

    return matvec_fn


def _solve(matvec_fn, args, V0, tol, *, method, max_iters):
    res = eigsh_top_k(lambda v: matvec_fn(args, v), V0, method=method, tol=tol, max_iters=max_iters)
    return res._replace(vectors=align_signs(res.vectors, V0))


@lru_cache(maxsize=64)
def _jitted_solve(matvec_fn, method: str, max_iters: int):
    """One jitted solver per (operator, method, budget), shared by trackers (compiled once per k)."""
    return jax.jit(partial(_solve, matvec_fn, method=method, max_iters=max_iters))


class EigenTracker:
    r"""Warm-started top eigenpairs of a symmetric operator whose tracked count grows by itself.

    Args:
      matvec_fn: ``matvec_fn(args, v) -> Av`` on flat vectors; ``args`` is a pytree passed through
        ``jit`` (params, data, preconditioner), e.g. :func:`hessian_matvec`.
      threshold: the stability threshold in the operator's units (2/η for the Hessian under GD, 2 for
        the effective :math:`P^{-1/2}HP^{-1/2}`).
      fraction: grow while the smallest tracked eigenvalue is ``>= fraction * threshold`` (0.75: the
        reference's 1.5/η).
      k_init: vectors tracked at the first call. k_max: the most ever tracked.
      method, tol, max_iters: passed to :func:`dynamics.curvature.topk.eigsh_top_k` (relative tolerance;
        ``"lobpcg"`` needs ``5k < n``).
      grow: ``False`` keeps ``k`` fixed (the stable flow's top-1 tracker).

    Call ``tracker(args, vectors, key=key) -> TrackedEigs``: ``vectors`` is the previous
    ``TrackedEigs.vectors`` (or ``None`` to start from ``k_init`` random vectors); ``key`` draws new
    directions. Example::

        tracker = EigenTracker(hessian_matvec(loss), threshold=2 / lr)
        eigs = tracker((params, (x, y), None), None, key=jax.random.key(0))
        eigs = tracker((new_params, (x, y), None), eigs.vectors, key=jax.random.key(1))
    """

    def __init__(self, matvec_fn: MatvecFn, *, threshold: float, fraction: float = 0.75, k_init: int = 1,
                 k_max: int = 8, method: str = "lanczos", tol: float = 1e-6, max_iters: int = 1000,
                 grow: bool = True):
        if not 1 <= k_init <= k_max:
            raise ValueError(f"need 1 <= k_init <= k_max, got k_init={k_init}, k_max={k_max}.")
        self.matvec_fn = matvec_fn
        self.threshold, self.fraction = float(threshold), float(fraction)
        self.k_init, self.k_max, self.grow = int(k_init), int(k_max), bool(grow)
        self.tol = tol
        self._solve = _jitted_solve(matvec_fn, method, int(max_iters))

    def _new_rows(self, V: jax.Array | None, n: int, count: int, key, dtype) -> jax.Array:
        R = jax.random.normal(key, (count, n), dtype)
        if V is not None:
            R = R - (R @ V.T) @ V
        return R / jnp.linalg.norm(R, axis=1, keepdims=True)

    def __call__(self, args: PyTree, vectors: jax.Array | None, *, key: jax.Array,
                 n: int | None = None, dtype=None) -> TrackedEigs:
        if vectors is None:
            if n is None:
                flat = ravel_pytree(args[0])[0]
                n, dtype = flat.shape[0], flat.dtype
            vectors = self._new_rows(None, n, self.k_init, key, dtype)
        n = vectors.shape[1]
        res = self._solve(args, vectors, self.tol)
        total = int(res.num_matvecs)
        while (self.grow and res.values.shape[0] < self.k_max
               and float(res.values[-1]) >= self.fraction * self.threshold):
            key, sub = jax.random.split(key)
            V = jnp.concatenate([res.vectors, self._new_rows(res.vectors, n, 1, sub, vectors.dtype)])
            res = self._solve(args, V, self.tol)
            total += int(res.num_matvecs)
        return TrackedEigs(res.values, res.vectors, res.residuals, total, bool(res.converged))
