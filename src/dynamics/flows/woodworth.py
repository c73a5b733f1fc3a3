"""Kernel vs rich regimes of x = u⊙u − v⊙v (Woodworth et al., COLT 2020) and interpolation oracles.

Gradient flow from u = v = α·1 on an underdetermined least-squares problem converges to
argmin Q_α(x) s.t. Zx = y, with Q_α(x) = α²·Σⱼ q(xⱼ/α²), q(z) = 2 − √(4 + z²) + z·arcsinh(z/2).
α → 0 gives min-ℓ1 (rich), α → ∞ min-ℓ2 (kernel).
"""

import jax
import jax.numpy as jnp
import numpy as np


def woodworth_q(z):
    """q(z) = ∫₀ᶻ arcsinh(s/2) ds = 2 − √(4 + z²) + z·arcsinh(z/2)."""
    return 2.0 - jnp.sqrt(4.0 + z * z) + z * jnp.arcsinh(z / 2.0)


def woodworth_potential(x, alpha):
    """Q_α(x) = α²·Σⱼ q(xⱼ/α²)."""
    a2 = alpha * alpha
    return a2 * jnp.sum(woodworth_q(x / a2))


def argmin_woodworth(Z, y, alpha, iters: int = 200):
    """argmin Q_α(x) s.t. Zx = y by damped Newton on the convex dual.

    Stationarity gives x(ν) = 2α²·sinh(Zᵀν); ν minimizes Ψ(ν) = 2α²·Σ cosh(Zᵀν) − yᵀν, whose gradient is
    Z·x(ν) − y and Hessian Z·diag(2α²cosh(Zᵀν))·Zᵀ. Armijo backtracking on Ψ (halvings, vectorized).
    Returns ``(x, residual ‖Zx − y‖)``. Use float64.
    """
    a2 = 2.0 * alpha * alpha
    steps = 0.5 ** jnp.arange(40, dtype=y.dtype)

    def psi(nu):
        s = Z.T @ nu
        return a2 * jnp.sum(jnp.cosh(s)) - y @ nu

    def body(_, nu):
        s = Z.T @ nu
        grad = Z @ (a2 * jnp.sinh(s)) - y
        hess = (Z * (a2 * jnp.cosh(s))) @ Z.T
        delta = -jnp.linalg.solve(hess, grad)
        dec = grad @ delta
        vals = jax.vmap(lambda t: psi(nu + t * delta))(steps)
        ok = (vals <= psi(nu) + 1e-4 * steps * dec) & jnp.isfinite(vals)
        t = jnp.where(jnp.any(ok), steps[jnp.argmax(ok)], 0.0)
        return nu + t * delta

    nu = jax.lax.fori_loop(0, iters, body, jnp.zeros_like(y))
    x = a2 * jnp.sinh(Z.T @ nu)
    return x, jnp.linalg.norm(Z @ x - y)


def min_l2_interpolant(Z, y):
    """argmin ‖x‖₂ s.t. Zx = y: Zᵀ(ZZᵀ)⁻¹y."""
    return Z.T @ jnp.linalg.solve(Z @ Z.T, y)


def min_weighted_l1_interpolant(Z, y, weights=None) -> np.ndarray:
    """argmin Σⱼ cⱼ|xⱼ| s.t. Zx = y (a reference oracle: scipy ``linprog``/HiGHS on x = p − q, p, q ≥ 0)."""
    from scipy.optimize import linprog

    Z = np.asarray(Z, np.float64)
    n, d = Z.shape
    c = np.ones(d) if weights is None else np.asarray(weights, np.float64)
    res = linprog(np.concatenate([c, c]), A_eq=np.hstack([Z, -Z]), b_eq=np.asarray(y, np.float64),
                  bounds=(0, None), method="highs")
    if res.status != 0:
        raise RuntimeError(f"linprog failed: {res.message}")
    return res.x[:d] - res.x[d:]
