r"""Top-k (largest algebraic) Hessian eigenpairs: restarted Lanczos, block power iteration, LOBPCG.

All three solvers share one relative tolerance. A Ritz pair :math:`(\lambda_i, v_i)`, :math:`\|v_i\| = 1`,
is converged when

.. math:: \|H v_i - \lambda_i v_i\| \le \mathrm{tol}\cdot \max_{j \le k} |\lambda_j| ,

i.e. the residual is small relative to the largest returned eigenvalue magnitude (the sharpness, in the
usual case of a positive top eigenvalue). Then some eigenvalue of :math:`H` lies within
:math:`\mathrm{tol}\cdot\max_j|\lambda_j|` of :math:`\lambda_i`, and with a spectral gap :math:`\delta`
the error is at most :math:`(\mathrm{tol}\,\max_j|\lambda_j|)^2/\delta`.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental.sparse.linalg import lobpcg_standard
from jax.flatten_util import ravel_pytree

from dynamics.compiled import self_compiling
from dynamics.curvature.hvp import flat_hvp
from dynamics.curvature.lanczos import lanczos_top_k

PyTree = object
Matvec = Callable[[jax.Array], jax.Array]
METHODS = ("lanczos", "power", "lobpcg")


class TopKResult(NamedTuple):
    """Top-k eigenpairs of a symmetric operator (a pytree, so it can be returned from ``jit``).

    Attributes:
      values: ``(k,)`` eigenvalues, descending (largest algebraic first).
      vectors: unit eigenvectors stacked along a leading axis of size ``k``: a pytree shaped like the
        parameters with an extra leading axis (``(k, n)`` for the flat-vector solvers). Pass it back
        as ``init`` to warm-start the next solve.
      residuals: ``(k,)`` relative residuals ``‖Hv_i − λ_i v_i‖ / max_j |λ_j|``.
      num_matvecs: Hessian-vector products spent (int scalar).
      converged: whether all ``k`` residuals are at most ``tol`` (bool scalar).
    """

    values: jax.Array
    vectors: PyTree
    residuals: jax.Array
    num_matvecs: jax.Array
    converged: jax.Array


def _block(matvec: Matvec) -> Matvec:
    """Apply a flat matvec to the columns of an ``(n, b)`` block (vmapped)."""
    return jax.vmap(matvec, in_axes=1, out_axes=1)


def _relative_residuals(matvec: Matvec, X: jax.Array, theta: jax.Array):
    """Explicit relative residuals of the column pairs ``(theta_i, X[:, i])``; costs ``k`` matvecs."""
    R = _block(matvec)(X) - X * theta[None, :]
    scale = jnp.maximum(jnp.max(jnp.abs(theta)), jnp.finfo(X.dtype).tiny)
    return jnp.linalg.norm(R, axis=0) / scale


def block_power_top_k(matvec: Matvec, V0: jax.Array, *, tol: float, max_iters: int):
    r"""Largest-algebraic eigenpairs by block power (subspace) iteration with Rayleigh–Ritz.

    Each iteration applies :math:`A - \sigma I` to an orthonormal block :math:`X \in \mathbb R^{n\times k}`,
    rotates the block to the Ritz vectors of :math:`X^\top A X` (explicit residuals, no extra matvec) and
    re-orthonormalises :math:`(A-\sigma I)X` by QR; convergence is geometric with ratio
    :math:`|\lambda_{k+1}-\sigma|/|\lambda_k-\sigma|`. Phase 0 runs with :math:`\sigma = 0` and finds the
    ``k`` eigenvalues of largest magnitude. If one of them is negative, the most negative one is
    :math:`\lambda_{\min}`; phase 1 then restarts from the current block with
    :math:`\sigma = \lambda_{\min}` (so :math:`A - \sigma I \succeq 0` and largest magnitude means largest
    algebraic), its negative Ritz vectors replaced by the matching starting columns.

    Args:
      matvec: symmetric operator on flat vectors ``(n,)``.
      V0: ``(n, k)`` starting block (columns need not be orthonormal).
      tol: relative residual tolerance (module docstring).
      max_iters: maximum number of matvecs (``k`` per iteration).

    Returns:
      ``(values (k,), vectors (n, k), relative_residuals (k,), num_matvecs, converged)``.
    """
    n, k = V0.shape
    dtype = V0.dtype
    tiny = jnp.finfo(dtype).tiny
    tol = jnp.asarray(tol, dtype)
    bmv = _block(matvec)

    def cond(state):
        _, _, _, it, phase, _ = state
        return (phase < 2) & (it + k <= max_iters)

    def body(state):
        X, _, _, it, phase, shift = state
        W = bmv(X) - shift * X
        G = X.T @ W
        mu, S = jnp.linalg.eigh(0.5 * (G + G.T))
        mu, S = mu[::-1], S[:, ::-1]
        X, W = X @ S, W @ S
        res = jnp.linalg.norm(W - X * mu[None, :], axis=0)
        theta = mu + shift
        rel = res / jnp.maximum(jnp.max(jnp.abs(theta)), tiny)
        done = jnp.all(rel <= tol)
        to_shift = done & (phase == 0) & jnp.any(theta < 0)
        new_phase = jnp.where(to_shift, 1, jnp.where(done, 2, phase))
        # On the shift, the converged block is invariant under A - σI too: replace its negative
        # Ritz vectors by the starting columns so that phase 1 has something left to find.
        X_shift = jnp.linalg.qr(jnp.where((theta < 0)[None, :], X0, X))[0]
        X_next = jnp.where(to_shift, X_shift, jnp.where(done, X, jnp.linalg.qr(W)[0]))
        new_shift = jnp.where(to_shift, jnp.min(theta), shift)
        return X_next, theta, rel, it + k, new_phase, new_shift

    X0 = jnp.linalg.qr(V0)[0]
    zero = jnp.zeros((), dtype)
    state = (X0, jnp.zeros((k,), dtype), jnp.full((k,), jnp.inf, dtype), jnp.asarray(0),
             jnp.asarray(0), zero)
    X, theta, rel, it, phase, _ = jax.lax.while_loop(cond, body, state)
    return theta, X, rel, it, phase == 2


def lobpcg_top_k(matvec: Matvec, V0: jax.Array, *, tol: float, max_iters: int):
    r"""Largest-algebraic eigenpairs by ``jax.experimental.sparse.linalg.lobpcg_standard``.

    JAX's LOBPCG declares pair ``i`` converged when
    :math:`\|r_i\| < \mathrm{tol_{jax}}\cdot 10\,n\,(\lambda_i + \|Av_i\|)`, a tolerance that scales with the
    dimension ``n``. It is called with :math:`\mathrm{tol_{jax}} = \mathrm{tol}/(20 n)`, i.e. it stops when
    :math:`\|r_i\| < \mathrm{tol}\,(\lambda_i + \|A v_i\|)/2 \approx \mathrm{tol}\,\lambda_i`, which implies the
    relative criterion of this module for positive :math:`\lambda_i` (it cannot stop early on a
    non-positive :math:`\lambda_i`; it then runs to ``max_iters``). The residuals and ``converged`` flag
    returned are recomputed explicitly with this module's criterion (``k`` extra matvecs). Each LOBPCG
    iteration costs ``4k`` matvecs (Rayleigh–Ritz on ``[X, P, R]`` plus ``A X``); it requires ``5k < n``.

    Args:
      matvec: symmetric operator on flat vectors ``(n,)``.
      V0: ``(n, k)`` starting block, linearly independent columns.
      tol: relative residual tolerance (module docstring).
      max_iters: maximum number of matvecs, converted to ``(max_iters - 2k) // 4k`` iterations (≥ 1).

    Returns:
      ``(values (k,), vectors (n, k), relative_residuals (k,), num_matvecs, converged)``.
    """
    n, k = V0.shape
    if 5 * k >= n:
        raise ValueError(f"method='lobpcg' needs 5k < n (got k={k}, n={n}); use method='lanczos'.")
    iters = max(1, (max_iters - 2 * k) // (4 * k))
    bmv = _block(matvec)
    tol_jax = jnp.asarray(tol, V0.dtype) / (20 * n)
    theta, X, i = lobpcg_standard(bmv, V0, m=iters, tol=tol_jax)
    rel = _relative_residuals(matvec, X, theta)
    return theta, X, rel, k + 4 * k * i + k, jnp.all(rel <= tol)


def eigsh_top_k(matvec: Matvec, V0: jax.Array, *, method: str = "lanczos", tol: float = 1e-5,
                max_iters: int = 500, ncv: int | None = None) -> TopKResult:
    r"""Largest-algebraic top-k eigenpairs of a symmetric operator on flat vectors.

    The matvec-level entry point behind :func:`top_eigenvalues`, for operators other than the plain
    Hessian (preconditioned, projected, data-chunked HVPs).

    Args:
      matvec: symmetric operator on flat vectors ``(n,)``.
      V0: ``(k, n)`` starting vectors (rows). Lanczos starts from the sum of the normalised rows;
        the block methods start from the block.
      method: ``"lanczos"`` (thick-restart, full re-orthogonalisation; the default and usually the
        cheapest), ``"power"`` (block power iteration) or ``"lobpcg"`` (JAX's, needs ``5k < n``).
      tol: relative residual tolerance: ``‖Hv_i − λ_i v_i‖ ≤ tol · max_j |λ_j|`` for all ``i ≤ k``.
      max_iters: maximum number of matvecs.
      ncv: Lanczos basis size before a restart (default ``min(n, max(2k + 1, 20))``).

    Returns:
      ``TopKResult`` with ``vectors`` of shape ``(k, n)``.
    """
    k = V0.shape[0]
    if method == "lanczos":
        v0 = jnp.sum(V0 / jnp.linalg.norm(V0, axis=1, keepdims=True), axis=0)
        vals, X, rel, nmv, conv = lanczos_top_k(matvec, v0, k, tol=tol, max_iters=max_iters,
                                                ncv=ncv)
        return TopKResult(vals, X, rel, nmv, conv)
    if method == "power":
        vals, X, rel, nmv, conv = block_power_top_k(matvec, V0.T, tol=tol, max_iters=max_iters)
    elif method == "lobpcg":
        vals, X, rel, nmv, conv = lobpcg_top_k(matvec, V0.T, tol=tol, max_iters=max_iters)
    else:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}.")
    return TopKResult(vals, X.T, rel, jnp.asarray(nmv), conv)


def initial_block(params: PyTree, k: int, key: jax.Array, init: PyTree | None = None) -> jax.Array:
    """Flat ``(k, n)`` starting vectors: ``init`` (one vector or a ``k'``-stack) topped up at random.

    Args:
      params: pytree fixing the flat layout and dtype.
      k: number of vectors wanted.
      key: PRNG key for the random rows.
      init: None, a pytree shaped like ``params`` (one vector), or such a pytree with an extra leading
        axis (a stack, e.g. ``TopKResult.vectors``). Extra rows are dropped.

    Returns:
      ``(k, n)`` array in the dtype of the flattened ``params``.
    """
    flat, _ = ravel_pytree(params)
    n = flat.shape[0]
    if init is None:
        return jax.random.normal(key, (k, n), flat.dtype)
    p_leaves = jax.tree.leaves(params)
    i_leaves = jax.tree.leaves(init)
    if len(p_leaves) != len(i_leaves):
        raise ValueError("init must have the pytree structure of params (optionally stacked).")
    stacked = jnp.ndim(i_leaves[0]) == jnp.ndim(p_leaves[0]) + 1
    if stacked:
        rows = jax.vmap(lambda t: ravel_pytree(t)[0])(init).astype(flat.dtype)
    else:
        rows = ravel_pytree(init)[0].astype(flat.dtype)[None, :]
    rows = rows[:k]
    if rows.shape[0] < k:
        extra = jax.random.normal(key, (k - rows.shape[0], n), flat.dtype)
        rows = jnp.concatenate([rows, extra], axis=0)
    return rows


@self_compiling(static=("k", "method", "max_iters", "ncv"))
def top_eigenvalues(loss_fn: Callable[[PyTree], jax.Array], params: PyTree, k: int = 1, *,
                    key: jax.Array, method: str = "lanczos", tol: float = 1e-5,
                    max_iters: int = 500, init: PyTree | None = None,
                    ncv: int | None = None) -> TopKResult:
    r"""Largest-algebraic ``k`` eigenpairs of the Hessian :math:`\nabla^2 L(\theta)`.

    Matrix-free: every solver touches the Hessian only through forward-over-reverse Hessian-vector
    products. A pair :math:`(\lambda_i, v_i)` is converged when
    :math:`\|\nabla^2L\,v_i - \lambda_i v_i\| \le \mathrm{tol}\cdot\max_{j\le k}|\lambda_j|`; the eigenvalue
    error is then at most :math:`\mathrm{tol}\cdot\max_j|\lambda_j|` and, with a spectral gap
    :math:`\delta`, about :math:`(\mathrm{tol}\,\max_j|\lambda_j|)^2/\delta`. During training, pass the
    previous ``result.vectors`` as ``init``: the top eigenvectors move slowly, so a warm start needs a
    few matvecs.

    Compiles itself (:mod:`dynamics.compiled`): a call with concrete arrays runs a cached jitted solve
    with the arrays ``loss_fn`` closes over passed as arguments; inside your own ``jax.jit`` it traces
    inline. ``k``, ``method``, ``max_iters`` and ``ncv`` are static.

    Args:
      loss_fn: ``loss_fn(params) -> scalar``.
      params: the point at which the Hessian is taken (a pytree).
      k: number of eigenpairs.
      key: PRNG key for the random start (unused when ``init`` supplies all ``k`` vectors).
      method: ``"lanczos"`` (default), ``"power"`` (block power iteration) or ``"lobpcg"``.
      tol: relative residual tolerance (above). In float32 do not ask for much below ``1e-6``.
      max_iters: maximum number of Hessian-vector products.
      init: warm start: a pytree shaped like ``params``, or a stack of them (leading axis), e.g. the
        previous ``TopKResult.vectors``; missing vectors are drawn at random.
      ncv: Lanczos basis size before a restart.

    Returns:
      ``TopKResult``: ``values`` ``(k,)`` descending, ``vectors`` (pytree with leading axis ``k``),
      ``residuals``, ``num_matvecs``, ``converged``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> loss = lambda p: 0.5 * jnp.sum(jnp.arange(1.0, 9.0) * p ** 2)
      >>> res = top_eigenvalues(loss, jnp.ones(8), 2, key=jax.random.key(0), tol=1e-6)
      >>> [round(float(v), 4) for v in res.values]
      [8.0, 7.0]
    """
    matvec, flat, unravel = flat_hvp(loss_fn, params)
    V0 = initial_block(params, k, key, init)
    res = eigsh_top_k(matvec, V0, method=method, tol=tol, max_iters=max_iters, ncv=ncv)
    return res._replace(vectors=jax.vmap(unravel)(res.vectors))
