"""Overparametrized diagonal linear models x = G(w), w = (u, v) ∈ ℝ^{2d}, on sparse regression.

Models (``kind``):

- ``"uu_minus_vv"``: x = u⊙u − v⊙v (Woodworth et al. 2020; Li, Wang, Arora 2022);
- ``"uv"``: x = u⊙v;
- ``"power"``: x = u^D − v^D (``depth`` D ≥ 2; D = 2 is ``uu_minus_vv``).

Loss L(w) = (1/2n)·Σᵢ (⟨zᵢ, G(w)⟩ − yᵢ)². Label-noise gradient descent draws fresh εᵢ ~ N(0, σ²) for the
batch each step and descends (1/2B)·Σ_{i∈B}(fᵢ − yᵢ − εᵢ)²; on the zero-loss manifold its noise covariance
is η²·c·∇²L with **c = σ²/B** (full batch: σ²/n).
"""

import jax
import jax.numpy as jnp

from dynamics.flows.scan import scan_log

KINDS = ("uu_minus_vv", "uv", "power")


def split(w: jax.Array) -> tuple[jax.Array, jax.Array]:
    """w = (u, v) → u, v (the two halves of the last axis)."""
    d = w.shape[-1] // 2
    return w[..., :d], w[..., d:]


def diag_map(kind: str, w: jax.Array, depth: int = 2) -> jax.Array:
    """The linear predictor x = G(w) of a diagonal model."""
    u, v = split(w)
    if kind == "uu_minus_vv":
        return u * u - v * v
    if kind == "uv":
        return u * v
    if kind == "power":
        return u ** depth - v ** depth
    raise ValueError(f"unknown diagonal model {kind!r}: allowed {', '.join(KINDS)}")


def init_params(d: int, u0: float, v0: float | None = None, dtype=jnp.float64) -> jax.Array:
    """u = u0·1, v = v0·1 (v0 defaults to u0, so x₀ = 0 for ``uu_minus_vv`` and ``power``)."""
    v0 = u0 if v0 is None else v0
    return jnp.concatenate([jnp.full((d,), u0, dtype), jnp.full((d,), v0, dtype)])


def sparse_regression(key: jax.Array, d: int, n: int, sparsity: int, dtype=jnp.float64):
    """z ~ N(0, I_d), w* = 1 on the first ``sparsity`` coordinates, y = Zw* (noise-free).

    Returns ``(Z, y, w_star)`` with Z of shape (n, d).
    """
    Z = jax.random.normal(key, (n, d), dtype)
    w_star = jnp.zeros((d,), dtype).at[:sparsity].set(1.0)
    return Z, Z @ w_star, w_star


def loss(kind: str, w, Z, y, depth: int = 2) -> jax.Array:
    """L(w) = (1/2n)·‖Z·G(w) − y‖²."""
    r = Z @ diag_map(kind, w, depth) - y
    return 0.5 * jnp.mean(r * r)


def _coordinate_derivatives(kind: str, w, depth: int):
    """Per coordinate: g = (∂x/∂u)² + (∂x/∂v)² and h = ∂²x/∂u² + ∂²x/∂v²."""
    u, v = split(w)
    if kind == "uu_minus_vv":
        return 4.0 * (u * u + v * v), jnp.zeros_like(u)
    if kind == "uv":
        return u * u + v * v, jnp.zeros_like(u)
    if kind == "power":
        D = depth
        g = D * D * (u ** (2 * D - 2) + v ** (2 * D - 2))
        h = D * (D - 1) * (u ** (D - 2) - v ** (D - 2))
        return g, h
    raise ValueError(f"unknown diagonal model {kind!r}: allowed {', '.join(KINDS)}")


def hessian_trace(kind: str, w, Z, y, depth: int = 2) -> jax.Array:
    """Exact tr ∇²L(w) = (1/n)·Σⱼ [sⱼ·gⱼ(w) + (Zᵀr)ⱼ·hⱼ(w)], sⱼ = Σᵢ zᵢⱼ², r = Z·G(w) − y.

    The first term is the Gauss–Newton part (1/n)·Σᵢ‖∇fᵢ‖²; the second vanishes on the zero-loss manifold
    (and identically for ``uu_minus_vv`` and ``uv``, whose coordinate maps have traceless Hessians).
    For ``uu_minus_vv`` this is (4/n)·Σⱼ sⱼ(uⱼ² + vⱼ²).
    """
    g, h = _coordinate_derivatives(kind, w, depth)
    r = Z @ diag_map(kind, w, depth) - y
    s = jnp.sum(Z * Z, axis=0)
    return (jnp.sum(s * g) + jnp.sum((Z.T @ r) * h)) / Z.shape[0]


def off_support_mass(w, support: jax.Array) -> jax.Array:
    """Σ_{j∉S} (uⱼ² + vⱼ²): the parameter mass outside the true support (``support`` boolean, shape d)."""
    u, v = split(w)
    return jnp.sum(jnp.where(support, 0.0, u * u + v * v))


def relative_error(x, w_star) -> jax.Array:
    """‖x − w*‖ / ‖w*‖."""
    return jnp.linalg.norm(x - w_star) / jnp.linalg.norm(w_star)


def label_noise_step(kind: str, w, Z, y, lr, sigma, key, batch_size: int | None = None, depth: int = 2):
    """One label-noise SGD step; returns ``(w_next, noisy residuals of the batch)``.

    Descends (1/2B)·Σ_{i∈B}(fᵢ(w) − yᵢ − εᵢ)², εᵢ ~ N(0, σ²) fresh; B = all n examples when
    ``batch_size`` is None, else ``batch_size`` indices drawn without replacement. σ = 0 is (S)GD.
    """
    n = Z.shape[0]
    k_batch, k_noise = jax.random.split(key)
    if batch_size is None or batch_size >= n:
        Zb, yb = Z, y
    else:
        idx = jax.random.choice(k_batch, n, (batch_size,), replace=False)
        Zb, yb = Z[idx], y[idx]
    target = yb + sigma * jax.random.normal(k_noise, yb.shape, yb.dtype)

    def batch_loss(p):
        r = Zb @ diag_map(kind, p, depth) - target
        return 0.5 * jnp.mean(r * r), r

    grad, r = jax.grad(batch_loss, has_aux=True)(w)
    return w - lr * grad, r


def run_label_noise(kind: str, w0, Z, y, key, *, lr, sigma, steps: int, log_every: int,
                    batch_size: int | None = None, depth: int = 2, start_step=0):
    """``steps`` label-noise steps in one scan (step t uses ``fold_in(key, start_step + t)``).

    Returns ``(w_final, w_logged)`` with ``w_logged`` the iterates at ``log_steps(steps, log_every)``.
    Call inside ``jax.jit`` with ``kind``, ``steps``, ``log_every``, ``batch_size``, ``depth`` static.
    """

    def step(carry):
        w, t = carry
        w, _ = label_noise_step(kind, w, Z, y, lr, sigma, jax.random.fold_in(key, t), batch_size, depth)
        return w, t + 1

    (w, _), (logged, _) = scan_log(step, (w0, jnp.asarray(start_step)), steps, log_every)
    return w, logged


def run_gd(kind: str, w0, Z, y, *, lr, steps: int, log_every: int, depth: int = 2, tol: float = 0.0):
    """Full-batch GD on L; with ``tol`` > 0 the iterate freezes once ‖Z·G(w) − y‖ < tol.

    Returns ``(w_final, w_logged)`` like :func:`run_label_noise`.
    """
    grad = jax.grad(lambda p: loss(kind, p, Z, y, depth))

    def step(w):
        done = jnp.linalg.norm(Z @ diag_map(kind, w, depth) - y) < tol
        return jnp.where(done, w, w - lr * grad(w))

    return scan_log(step, w0, steps, log_every)
