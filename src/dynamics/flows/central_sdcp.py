r"""The k×k semidefinite complementarity problem (SDCP) of central flows, and a jit-able solver.

Given a symmetric :math:`A \in \mathbb S^k` and a linear operator :math:`\mathcal B` on :math:`\mathbb S^k`
that is symmetric and positive semidefinite for the Frobenius product
(:math:`\langle X, \mathcal B[X]\rangle \ge 0`), find :math:`X` with

.. math:: X \succeq 0, \qquad Y = A + \mathcal B[X] \succeq 0, \qquad \langle X, Y\rangle = 0 .

These are the KKT conditions of the convex problem
:math:`\min_{X\succeq 0} \tfrac12\langle X,\mathcal B[X]\rangle + \langle A, X\rangle`, which is solved here.
In central flows (Cohen, Damian et al. 2025) :math:`A` is the stability margin :math:`U^\top(2P - H)U`
linearised one substep ahead and :math:`\mathcal B` the Gram operator of the third-derivative vectors
:math:`G_{ij}` (see ``dynamics.flows.central``); :math:`X` is :math:`\tilde\Sigma`, the oscillation
covariance in the basis :math:`U`. :math:`\mathcal B[X]` (hence :math:`Y`) is unique; :math:`X` is unique
when :math:`\mathcal B` is definite.

Coordinates: ``svec`` maps :math:`\mathbb S^k` isometrically to :math:`\mathbb R^{m}`, :math:`m = k(k+1)/2`
(upper triangle in ``numpy.triu_indices`` order, off-diagonals times :math:`\sqrt2`), so
:math:`\langle X, Y\rangle_F = \mathrm{svec}(X)\cdot\mathrm{svec}(Y)` and :math:`\mathcal B` becomes a PSD
matrix :math:`M`. Solver: accelerated projected gradient (FISTA with adaptive restart; the projection
onto the PSD cone clips eigenvalues), then a polish that solves the equality-constrained problem on the
face spanned by the positive eigenvectors of the iterate exactly (least squares), kept if its KKT
residual is smaller. For k ≤ 4 this takes well under a millisecond after compilation.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class SDCPResult(NamedTuple):
    """Solution of an SDCP: ``X`` (``(k, k)`` PSD), ``Y = A + B[X]``, and the relative KKT residual
    ``max(−λmin X, −λmin Y, |⟨X, Y⟩| / ‖A‖) / ‖A‖`` (after scaling :math:`\\mathcal B` to unit norm)."""

    X: jax.Array
    Y: jax.Array
    residual: jax.Array


def svec_weights(k: int) -> np.ndarray:
    """``(m,)`` weights of ``svec``: 1 on the diagonal, √2 off it (``triu_indices`` order)."""
    i, j = np.triu_indices(k)
    return np.where(i == j, 1.0, np.sqrt(2.0))


def svec(A: jax.Array) -> jax.Array:
    """``(k, k)`` symmetric → ``(m,)``: upper triangle with off-diagonals scaled by √2."""
    k = A.shape[-1]
    i, j = np.triu_indices(k)
    return A[..., i, j] * svec_weights(k).astype(A.dtype)


def smat(x: jax.Array, k: int) -> jax.Array:
    """Inverse of :func:`svec`."""
    i, j = np.triu_indices(k)
    vals = x / svec_weights(k).astype(x.dtype)
    X = jnp.zeros((k, k), x.dtype).at[i, j].set(vals)
    return X.at[j, i].set(vals)


def operator_matrix(B: jax.Array) -> jax.Array:
    r"""``(k, k, k, k)`` tensor with :math:`\mathcal B[X]_{ij} = \sum_{kl} B_{ijkl}X_{kl}` → ``(m, m)``
    matrix in ``svec`` coordinates (symmetrised)."""
    k = B.shape[0]
    Bs = 0.25 * (B + B.transpose(1, 0, 2, 3) + B.transpose(0, 1, 3, 2) + B.transpose(1, 0, 3, 2))
    i, j = np.triu_indices(k)
    s = svec_weights(k).astype(B.dtype)
    M = s[:, None] * s[None, :] * Bs[i, j][:, i, j]
    return 0.5 * (M + M.T)


def _project(x: jax.Array, k: int) -> jax.Array:
    d, Q = jnp.linalg.eigh(smat(x, k))
    return svec((Q * jnp.maximum(d, 0)) @ Q.T)


def _residual(x, a, M, k):
    y = a + M @ x
    scale = jnp.maximum(jnp.linalg.norm(a), jnp.finfo(a.dtype).tiny)
    neg_x = jnp.maximum(-jnp.linalg.eigvalsh(smat(x, k))[0], 0)
    neg_y = jnp.maximum(-jnp.linalg.eigvalsh(smat(y, k))[0], 0)
    return jnp.maximum(jnp.maximum(neg_x, neg_y) / scale, jnp.abs(x @ y) / scale**2)


def _fista(a, M, k, max_iters, tol):
    def body(state):
        x, z, t, it, _ = state
        x_new = _project(z - (M @ z + a), k)
        restart = (z - x_new) @ (x_new - x) > 0
        t_new = jnp.where(restart, 1.0, 0.5 * (1 + jnp.sqrt(1 + 4 * t**2)))
        z_new = jnp.where(restart, x_new, x_new + ((t - 1) / t_new) * (x_new - x))
        t_new = jnp.where(restart, 1.0, t_new)
        return x_new, z_new, t_new, it + 1, _residual(x_new, a, M, k)

    def cond(state):
        return (state[3] < max_iters) & (state[4] > tol)

    x0 = jnp.zeros_like(a)
    state = (x0, x0, jnp.asarray(1.0, a.dtype), jnp.asarray(0), _residual(x0, a, M, k))
    return jax.lax.while_loop(cond, body, state)[0]


def _face_polish(x, a, M, k, rel=1e-7):
    """Minimise exactly over {Q Z Qᵀ : Z supported on the positive eigenvectors of smat(x)}."""
    d, Q = jnp.linalg.eigh(smat(x, k))
    active = d > rel * jnp.maximum(jnp.max(jnp.abs(d)), jnp.finfo(x.dtype).tiny)
    m = a.shape[0]
    basis = jnp.eye(m, dtype=a.dtype)
    T = jax.vmap(lambda e: svec(Q @ smat(e, k) @ Q.T))(basis).T  # svec(Z) -> svec(Q Z Qᵀ), orthogonal
    i, j = np.triu_indices(k)
    mask = active[i] & active[j]
    Mr = T.T @ M @ T
    K = jnp.where(mask[:, None] & mask[None, :], Mr, 0) + jnp.diag(jnp.where(mask, 0, 1.0))
    rhs = jnp.where(mask, -(T.T @ a), 0)
    z = jnp.linalg.pinv(K, rtol=1e-12, hermitian=True) @ rhs
    return T @ jnp.where(mask, z, 0)


def solve_sdcp_svec(a: jax.Array, M: jax.Array, k: int, *, max_iters: int = 3000,
                    tol: float = 1e-13) -> SDCPResult:
    r"""Solve the SDCP in ``svec`` coordinates: ``a = svec(A)`` ``(m,)``, ``M`` ``(m, m)`` PSD.

    ``k`` and ``max_iters`` are static. Returns :class:`SDCPResult` with matrices ``X``, ``Y``.
    """
    L = jnp.maximum(jnp.linalg.eigvalsh(0.5 * (M + M.T))[-1], jnp.finfo(a.dtype).tiny)
    Mn, an = M / L, a / L
    x = _fista(an, Mn, k, max_iters, tol)
    xp = _face_polish(x, an, Mn, k)
    rx, rp = _residual(x, an, Mn, k), _residual(xp, an, Mn, k)
    x = jnp.where(rp <= rx, xp, x)
    return SDCPResult(smat(x, k), smat(a + M @ x, k), jnp.minimum(rx, rp))


def solve_sdcp(A: jax.Array, B: jax.Array, *, max_iters: int = 3000, tol: float = 1e-13) -> SDCPResult:
    r"""Solve :math:`X \succeq 0,\ A + \mathcal B[X] \succeq 0,\ \langle X, A + \mathcal B[X]\rangle = 0`.

    Args:
      A: ``(k, k)`` symmetric matrix.
      B: ``(k, k, k, k)`` tensor, :math:`\mathcal B[X]_{ij} = \sum_{kl} B_{ijkl} X_{kl}`, PSD as an
        operator on symmetric matrices (symmetrised internally).
      max_iters, tol: projected-gradient budget and relative KKT tolerance.

    Returns:
      :class:`SDCPResult`. For ``k = 1`` this is ``X = max(0, −A/B)``.
    """
    k = A.shape[0]
    return solve_sdcp_svec(svec(0.5 * (A + A.T)), operator_matrix(B), k, max_iters=max_iters, tol=tol)
