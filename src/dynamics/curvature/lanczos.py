"""Lanczos on flat symmetric operators: fixed-order tridiagonalisation and restarted top-k eigenpairs.

Both routines keep the whole Krylov basis and re-orthogonalise every new vector against it twice
(classical Gram–Schmidt, "twice is enough"), so the projected matrix is the exact Rayleigh quotient
:math:`V^\\top A V` up to rounding and no spurious copies of converged eigenvalues appear. A breakdown
(the Krylov space became invariant) continues with a pseudo-random vector orthogonal to the basis.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

Matvec = Callable[[jax.Array], jax.Array]


def _expand(matvec: Matvec, V: jax.Array, H: jax.Array, j: jax.Array):
    r"""One Arnoldi/Lanczos step: ``A v_j``, orthogonalised against rows ``0..j`` of ``V``.

    ``V`` is an ``(m + 1, n)`` buffer of basis rows (rows after ``j`` are zero), ``H`` the
    ``(m + 1, m)`` projected matrix; column ``j`` of ``H`` receives the projection coefficients and
    ``H[j + 1, j]`` the norm of the new direction, so that :math:`A V_{:j+1}^\top = V^\top H_{:, :j+1}`.
    """
    dtype = V.dtype
    rows = jnp.arange(V.shape[0])
    mask = (rows <= j).astype(dtype)
    w = matvec(V[j])
    a_norm = jnp.linalg.norm(w)
    h = (V @ w) * mask
    w = w - h @ V
    h2 = (V @ w) * mask
    w = w - h2 @ V
    h = h + h2
    beta = jnp.linalg.norm(w)
    eps = jnp.finfo(dtype).eps
    breakdown = beta <= 10 * eps * a_norm + jnp.finfo(dtype).tiny

    def fresh(_):
        # A deterministic pseudo-random vector (cheaper to compile than a PRNG draw).
        i = jnp.arange(w.shape[0], dtype=dtype)
        r = jnp.sin(12.9898 * i + 78.233 * jnp.asarray(j + 1, dtype)) * 43758.5453
        r = r - jnp.floor(r) - 0.5
        mask_next = (rows <= j).astype(dtype)
        r = r - ((V @ r) * mask_next) @ V
        r = r - ((V @ r) * mask_next) @ V
        return r / jnp.linalg.norm(r)

    v_next = jax.lax.cond(breakdown, fresh, lambda _: w / jnp.where(breakdown, 1, beta), None)
    beta = jnp.where(breakdown, 0, beta)
    h = h.at[j + 1].set(beta)
    # In place (a dynamic update slice: ``j + 1 <= m`` always, so no bounds select over all of V).
    return jax.lax.dynamic_update_index_in_dim(V, v_next, j + 1, 0), H.at[:, j].set(h)


def _ritz(H: jax.Array, j: jax.Array):
    """Ritz values (descending) and vectors of the leading ``j x j`` block of ``H[:m, :m]``.

    The inactive trailing block is replaced by a diagonal far below the active spectrum, so the first
    ``j`` returned pairs are those of the active block (vectors supported on its coordinates).
    """
    m = H.shape[1]
    T = H[:m, :m]
    T = 0.5 * (T + T.T)
    active = jnp.arange(m) < j
    T = jnp.where(active[:, None] & active[None, :], T, 0)
    low = -(2 * jnp.linalg.norm(T) + 1)
    T = T + jnp.diag(jnp.where(active, 0, low))
    w, S = jnp.linalg.eigh(T)
    return w[::-1], S[:, ::-1]


def lanczos_ritz(matvec: Matvec, v0: jax.Array, order: int):
    r"""Ritz values and quadrature weights of ``order`` Lanczos steps from ``v0``.

    Builds an orthonormal Krylov basis :math:`V = [v_0, \dots, v_{m-1}]` of
    :math:`\mathcal K_m(A, v_0)` with full re-orthogonalisation and diagonalises the projected matrix
    :math:`T = V^\top A V = S\,\mathrm{diag}(\theta)\,S^\top`. The pairs :math:`(\theta_j, S_{0j}^2)` are the
    nodes and weights of the Gauss quadrature rule for the spectral measure of :math:`A` seen from
    :math:`v_0`: :math:`v_0^\top f(A) v_0 \approx \sum_j S_{0j}^2 f(\theta_j)`, exact for polynomials of
    degree :math:`< 2m`.

    Args:
      matvec: symmetric operator on flat vectors of shape ``(n,)``.
      v0: starting vector ``(n,)``; normalised internally.
      order: number of Lanczos steps ``m`` (matvecs), ``1 <= m <= n``.

    Returns:
      ``(nodes, weights)``, each of shape ``(order,)``; ``nodes`` descending, ``weights`` sum to 1.
    """
    n = v0.shape[0]
    if not 1 <= order <= n:
        raise ValueError(f"order must be in [1, n={n}], got {order}.")
    dtype = v0.dtype
    V = jnp.zeros((order + 1, n), dtype).at[0].set(v0 / jnp.linalg.norm(v0))
    H = jnp.zeros((order + 1, order), dtype)

    def body(j, carry):
        V, H = carry
        return _expand(matvec, V, H, j)

    V, H = jax.lax.fori_loop(0, order, body, (V, H))
    theta, S = _ritz(H, order)
    return theta, S[0] ** 2


def lanczos_top_k(matvec: Matvec, v0: jax.Array, k: int, *, tol: float, max_iters: int,
                  ncv: int | None = None):
    r"""Largest-algebraic ``k`` eigenpairs of a symmetric operator by thick-restart Lanczos.

    Krylov–Schur form: the basis rows :math:`V` satisfy :math:`A V_j^\top = V_j^\top B_j + v_{j+1} b_j^\top`
    with :math:`B_j` the Rayleigh quotient. Each step adds one matvec, then the Ritz pairs
    :math:`(\theta_i, y_i = V_j^\top s_i)` are checked: the residual is exactly
    :math:`\|A y_i - \theta_i y_i\| = |b_j^\top s_i|` (no extra matvec). When the basis holds ``ncv``
    vectors, it is restarted from the best ``p = k + (ncv - k) // 2`` Ritz vectors plus the residual
    direction. Stops when every one of the top ``k`` pairs has
    :math:`\|A y_i - \theta_i y_i\| \le \mathrm{tol}\cdot\max_{i\le k}|\theta_i|`, or after ``max_iters``
    matvecs.

    Args:
      matvec: symmetric operator on flat vectors ``(n,)``.
      v0: starting vector ``(n,)`` (for a warm start: a combination of previous eigenvectors).
      k: number of eigenpairs, ``k < n``.
      tol: relative residual tolerance (see above).
      max_iters: maximum number of matvecs.
      ncv: Krylov basis size before a restart; default ``min(n, max(2k + 1, 20))``.

    Returns:
      ``(values (k,), vectors (k, n), relative_residuals (k,), num_matvecs, converged)``; values
      descending, vectors orthonormal rows, residuals estimated from the Krylov decomposition.
    """
    n = v0.shape[0]
    dtype = v0.dtype
    m = min(n, max(2 * k + 1, 20)) if ncv is None else min(int(ncv), n)
    if not 0 < k < m:
        raise ValueError(f"need 0 < k < ncv <= n; got k={k}, ncv={m}, n={n}. Use a smaller k.")
    p = min(m - 1, k + (m - k) // 2)
    tiny = jnp.finfo(dtype).tiny
    tol = jnp.asarray(tol, dtype)

    def check(H, j):
        theta, S = _ritz(H, j)
        res = jnp.abs(H[j, :] @ S[:, :k])
        scale = jnp.maximum(jnp.max(jnp.abs(theta[:k])), tiny)
        rel = res / scale
        return theta, S, rel, (j >= k) & jnp.all(rel <= tol)

    def restart(args):
        V, H, theta, S = args
        Y = S[:, :p].T @ V[:m]
        b = H[m, :] @ S[:, :p]
        Vn = jnp.zeros_like(V).at[:p].set(Y).at[p].set(V[m])
        Hn = jnp.zeros_like(H).at[jnp.arange(p), jnp.arange(p)].set(theta[:p]).at[p, :p].set(b)
        return Vn, Hn, jnp.asarray(p)

    def cond(state):
        it, done = state[3], state[4]
        return (~done) & (it < max_iters)

    def body(state):
        V, H, j, it, _, _, _, _, _ = state
        V, H = _expand(matvec, V, H, j)
        j = j + 1
        theta, S, rel, done = check(H, j)
        restarting = (j == m) & ~done
        V, H, j = jax.lax.cond(restarting, restart, lambda a: (a[0], a[1], j), (V, H, theta, S))
        # Only the Ritz coefficients are carried: forming the vectors costs a pass over V, which
        # is done once after the loop (a pass per step cost ~10% of the solve next to an MLP HVP).
        return V, H, j, it + 1, done, theta[:k], S[:, :k], rel, restarting

    V = jnp.zeros((m + 1, n), dtype).at[0].set(v0 / jnp.linalg.norm(v0))
    H = jnp.zeros((m + 1, m), dtype)
    state = (V, H, jnp.asarray(0), jnp.asarray(0), jnp.asarray(False), jnp.zeros((k,), dtype),
             jnp.zeros((m, k), dtype), jnp.full((k,), jnp.inf, dtype), jnp.asarray(False))
    V, _, _, it, done, theta, Sk, rel, restarted = jax.lax.while_loop(cond, body, state)
    # The Ritz vectors of the last check. A restart in the last step replaced V, but its first basis
    # rows are those same Ritz vectors (p >= k, descending).
    X = jnp.where(restarted, V[:k], Sk.T @ V[:m])
    X = X / jnp.linalg.norm(X, axis=1, keepdims=True)
    return theta, X, rel, it, done
