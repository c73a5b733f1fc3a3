"""Gradient descent on commuting parametrizations = mirror descent (Li, Wang, Lee, Arora, NeurIPS 2022).

For x = G(w) with commuting gradient fields [∇Gᵢ, ∇Gⱼ] = 0, the path x(t) = G(w(t)) of dw/dt = −∇(L∘G)(w)
is the mirror flow d∇R(x)/dt = −∇L(x), ∇R(x(0)) = 0, for every loss L. The inverse mirror map (∇R)⁻¹(μ) is
the leaf map: the point reached by flowing w₀ along the fields ∇Gⱼ for times μⱼ. Per coordinate:

| model (init)              | leaf map x(μ)                       | ∇R(x)                                   |
|---------------------------|-------------------------------------|-----------------------------------------|
| u⊙u − v⊙v (u₀, v₀)        | u₀²e^{4μ} − v₀²e^{−4μ}              | ¼·log[(x + √(x² + 4u₀²v₀²))/(2u₀²)]      |
| u⊙v (u₀, v₀)              | p·e^{2μ} − q·e^{−2μ}, p,q = (u₀±v₀)²/4 | ½·log[(x + √(x² + 4pq))/(2p)]        |
| u^D − v^D (u₀ = v₀ = α)   | α^D·h_D(D(D−2)α^{D−2}μ)             | h_D⁻¹(x/α^D)/(D(D−2)α^{D−2})            |

with h_D(s) = (1−s)^{−D/(D−2)} − (1+s)^{−D/(D−2)} on (−1, 1). Mirror descent is run in dual form
μ ← μ − η∇L(x), x = (∇R)⁻¹(μ); its gap to GD in w is O(η). The non-commuting control is X = UUᵀ with
generic symmetric measurements, where the matrix-entropy mirror descent X ← exp(log X − 4η∇L(X)) does not
track GD, whatever η.
"""

from dataclasses import dataclass
from itertools import combinations

import jax
import jax.numpy as jnp

from dynamics.flows.diagonal import diag_map
from dynamics.flows.scan import scan_log


@dataclass(frozen=True)
class MirrorModel:
    """A diagonal model with its initialization and mirror map. ``kind``: uu_minus_vv | uv | power."""

    kind: str
    u0: float
    v0: float
    depth: int = 2

    def __post_init__(self):
        if self.kind == "power" and (self.depth < 3 or self.u0 != self.v0):
            raise ValueError("power model: depth >= 3 and u0 == v0 (use uu_minus_vv for depth 2)")

    def G(self, w):
        return diag_map(self.kind, w, self.depth)

    def init(self, d: int, dtype=jnp.float64):
        return jnp.concatenate([jnp.full((d,), self.u0, dtype), jnp.full((d,), self.v0, dtype)])

    # (p, q, rate, scale): x(μ) = p·e^{rate·μ} − q·e^{−rate·μ}, ∇R = log[(x + √(x² + 4pq))/(2p)]/rate
    def _exp_form(self):
        if self.kind == "uu_minus_vv":
            return self.u0 ** 2, self.v0 ** 2, 4.0
        if self.kind == "uv":
            return (self.u0 + self.v0) ** 2 / 4.0, (self.u0 - self.v0) ** 2 / 4.0, 2.0
        raise ValueError(self.kind)

    def grad_R_inv(self, mu):
        """(∇R)⁻¹(μ): the leaf map, x as a function of the dual variable."""
        if self.kind == "power":
            D, a = self.depth, self.u0
            return a ** D * h_power(D * (D - 2) * a ** (D - 2) * mu, D)
        p, q, rate = self._exp_form()
        return p * jnp.exp(rate * mu) - q * jnp.exp(-rate * mu)

    def grad_R(self, x):
        """∇R(x): the inverse of the leaf map (∇R(x₀) = 0)."""
        if self.kind == "power":
            D, a = self.depth, self.u0
            return h_power_inv(x / a ** D, D) / (D * (D - 2) * a ** (D - 2))
        p, q, rate = self._exp_form()
        return jnp.log((x + jnp.sqrt(x * x + 4 * p * q)) / (2 * p)) / rate

    def R(self, x):
        """R(x) up to a constant (the two-exponential models; shifted hyperbolic entropy)."""
        if self.kind == "power":
            raise ValueError("R is given only through ∇R for the power model")
        p, q, rate = self._exp_form()
        root = jnp.sqrt(x * x + 4 * p * q)
        return jnp.sum(x * jnp.log((x + root) / (2 * p)) - root) / rate


def h_power(s, D: int):
    """h_D(s) = (1−s)^{−D/(D−2)} − (1+s)^{−D/(D−2)}, increasing from −∞ to ∞ on (−1, 1)."""
    e = -D / (D - 2)
    return (1 - s) ** e - (1 + s) ** e


def h_power_inv(z, D: int, iters: int = 200):
    """h_D⁻¹(z) by bisection on (−1, 1) (elementwise)."""
    lo, hi = -jnp.ones_like(z), jnp.ones_like(z)

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        above = h_power(mid, D) > z
        return jnp.where(above, lo, mid), jnp.where(above, mid, hi)

    lo, hi = jax.lax.fori_loop(0, iters, body, (lo, hi))
    return 0.5 * (lo + hi)


def quadratic_loss_grad(Z, y):
    """∇L for L(x) = ½‖Zx − y‖²."""
    return lambda x: Z.T @ (Z @ x - y)


def _repeat(update, substeps):
    """``update`` applied ``substeps`` times (a traced count: one compilation serves every step size)."""
    return lambda c: jax.lax.fori_loop(0, substeps, lambda _, c: update(c), c)


def gd_vs_mirror(model: MirrorModel, Z, y, *, lr, steps: int, log_every: int, substeps=1):
    """x = G(w) along GD in w, and x along dual mirror descent, both with step ``lr`` on L = ½‖Zx − y‖².

    Runs ``steps·substeps`` steps; returns ``(x_gd, x_md)`` after 0, log_every·substeps, ... steps (shape
    (logs, d)). Halving ``lr`` and doubling ``substeps`` keeps the logged times t = lr·step.
    """
    grad_x = quadratic_loss_grad(Z, y)
    grad_w = jax.grad(lambda w: 0.5 * jnp.sum((Z @ model.G(w) - y) ** 2))
    w0 = model.init(Z.shape[1], Z.dtype)
    _, w_log = scan_log(_repeat(lambda w: w - lr * grad_w(w), substeps), w0, steps, log_every)
    mu0 = jnp.zeros(Z.shape[1], Z.dtype)
    _, mu_log = scan_log(_repeat(lambda mu: mu - lr * grad_x(model.grad_R_inv(mu)), substeps), mu0, steps,
                         log_every)
    return jax.vmap(model.G)(w_log), jax.vmap(model.grad_R_inv)(mu_log)


# ------------------------------------------------------------------ matrix factorization (control)

def _sym_fn(X, fn):
    vals, vecs = jnp.linalg.eigh(0.5 * (X + X.T))
    return (vecs * fn(vals)) @ vecs.T


def matrix_sensing(key, dim: int, num_measurements: int, commuting: bool, dtype=jnp.float64):
    """Symmetric measurements Aᵢ (pairwise commuting: Aᵢ = Q·diag(aᵢ)·Qᵀ; else generic), X* = Q·diag(2, 1,
    0, ...)·Qᵀ, bᵢ = ⟨Aᵢ, X*⟩. Returns ``(A, b, X_star)``."""
    kq, ka = jax.random.split(key)
    Q, _ = jnp.linalg.qr(jax.random.normal(kq, (dim, dim), dtype))
    if commuting:
        a = jax.random.normal(ka, (num_measurements, dim), dtype)
        A = jnp.einsum("ij,mj,kj->mik", Q, a, Q)
    else:
        M = jax.random.normal(ka, (num_measurements, dim, dim), dtype)
        A = 0.5 * (M + jnp.swapaxes(M, 1, 2))
    diag = jnp.zeros((dim,), dtype).at[:2].set(jnp.array([2.0, 1.0], dtype))
    X_star = (Q * diag) @ Q.T
    return A, jnp.einsum("mij,ij->m", A, X_star), X_star


def matrix_gd_vs_mirror(A, b, alpha, *, lr, steps: int, log_every: int, substeps=1):
    """X = UUᵀ along GD on U (U ← U − 2η∇L(X)U, U₀ = αI) vs X along matrix-entropy mirror descent
    X ← exp(log X − 4η∇L(X)), L(X) = ½Σᵢ(⟨Aᵢ, X⟩ − bᵢ)². The two agree to O(η) only when the Aᵢ commute.
    Runs ``steps·substeps`` steps; returns ``(X_gd, X_md)`` at the logged steps (as in ``gd_vs_mirror``)."""
    dim = A.shape[-1]

    def grad_L(X):
        r = jnp.einsum("mij,ij->m", A, X) - b
        return jnp.einsum("m,mij->ij", r, A)

    U0 = alpha * jnp.eye(dim, dtype=A.dtype)
    _, U_log = scan_log(_repeat(lambda U: U - lr * 2.0 * grad_L(U @ U.T) @ U, substeps), U0, steps, log_every)
    X0 = U0 @ U0.T
    _, X_log = scan_log(_repeat(lambda X: _sym_fn(_sym_fn(X, jnp.log) - 4.0 * lr * grad_L(X), jnp.exp), substeps),
                        X0, steps, log_every)
    return jnp.einsum("tij,tkj->tik", U_log, U_log), X_log


# ------------------------------------------------------------------------------- Lie brackets

def lie_bracket(G, w, i: int, j: int):
    """[∇Gᵢ, ∇Gⱼ](w) = ∇²Gᵢ(w)·∇Gⱼ(w) − ∇²Gⱼ(w)·∇Gᵢ(w), by ``jax.jvp`` of the gradient fields."""
    gi = jax.grad(lambda p: G(p)[i])
    gj = jax.grad(lambda p: G(p)[j])
    _, a = jax.jvp(gi, (w,), (gj(w),))
    _, b = jax.jvp(gj, (w,), (gi(w),))
    return a - b


def max_lie_bracket(G, w) -> jax.Array:
    """max over pairs i < j of ‖[∇Gᵢ, ∇Gⱼ](w)‖ for G: ℝ^D → ℝ^d (flat output): 0 iff G commutes at w."""
    d = G(w).size
    pairs = jnp.array(list(combinations(range(d), 2)))
    flat = lambda p: jnp.ravel(G(p))  # noqa: E731

    def one(pair):
        gi = jax.grad(lambda p: flat(p)[pair[0]])
        gj = jax.grad(lambda p: flat(p)[pair[1]])
        _, a = jax.jvp(gi, (w,), (gj(w),))
        _, b = jax.jvp(gj, (w,), (gi(w),))
        return jnp.linalg.norm(a - b)

    return jnp.max(jax.vmap(one)(pairs))
