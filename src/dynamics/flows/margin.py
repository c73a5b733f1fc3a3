"""Margin maximization of two-layer Leaky-ReLU nets (Lyu, Li, Wang, Arora, NeurIPS 2021).

f_θ(x) = Σₖ aₖ·φ(wₖᵀx), φ(z) = max(z, α_leak·z), no biases (2-homogeneous). On symmetric, linearly separable
data ((x, y) and (−x, −y) both present) GD from small init on the logistic loss converges to a linear
classifier with the globally optimal normalized margin q* = (1 + α_leak)/4·γ_SVM, where
q(θ) = minᵢ yᵢf_θ(xᵢ)/‖θ‖² and γ_SVM is the bias-free hard-margin SVM margin.
"""

import jax
import jax.numpy as jnp
import numpy as np

from dynamics.scan import scan_at, scan_log


def leaky_relu(z, leak):
    return jnp.where(z > 0, z, leak * z)


def init_two_layer(key, d: int, width: int, scale: float, dtype=jnp.float64) -> dict:
    """wₖ ~ scale·N(0, I_d), aₖ ~ scale·N(0, 1)."""
    kw, ka = jax.random.split(key)
    return {"W": scale * jax.random.normal(kw, (width, d), dtype),
            "a": scale * jax.random.normal(ka, (width,), dtype)}


def two_layer_apply(params: dict, X, leak):
    return leaky_relu(X @ params["W"].T, leak) @ params["a"]


def symmetric_separable_data(key, n_base: int, d: int, dtype=jnp.float64):
    """``n_base`` points x ~ N(0, I_d) labelled by a random teacher, plus their mirrors (−x, −y)."""
    kx, kt = jax.random.split(key)
    X0 = jax.random.normal(kx, (n_base, d), dtype)
    y0 = jnp.sign(X0 @ jax.random.normal(kt, (d,), dtype))
    return jnp.concatenate([X0, -X0]), jnp.concatenate([y0, -y0])


def logistic_loss(params, X, y, leak):
    """Mean log(1 + e^{−yf})."""
    return jnp.mean(jnp.logaddexp(0.0, -y * two_layer_apply(params, X, leak)))


def sq_norm(params) -> jax.Array:
    return sum(jnp.sum(p * p) for p in jax.tree.leaves(params))


def normalized_margin(params, X, y, leak):
    """q(θ) = minᵢ yᵢf(xᵢ)/‖θ‖²."""
    return jnp.min(y * two_layer_apply(params, X, leak)) / sq_norm(params)


def effective_linear(params):
    """β = Σₖ aₖwₖ (f(x) − f(−x) = (1 + α_leak)·⟨β, x⟩)."""
    return params["a"] @ params["W"]


def linearity(params, X, leak):
    """‖f(X) − ((1 + α_leak)/2)·Xβ‖ / ‖f(X)‖: 0 for a net that is linear on the data."""
    f = two_layer_apply(params, X, leak)
    return jnp.linalg.norm(f - 0.5 * (1 + leak) * (X @ effective_linear(params))) / jnp.linalg.norm(f)


def svm_direction(X, y) -> tuple[np.ndarray, float]:
    """Bias-free hard-margin linear SVM: ŵ (unit) and γ_SVM = minᵢ yᵢ⟨ŵ, xᵢ⟩.

    Reference oracle: the dual max_{λ≥0} Σλᵢ − ½‖Σλᵢyᵢxᵢ‖² by scipy L-BFGS-B.
    """
    from scipy.optimize import minimize

    M = np.asarray(y, np.float64)[:, None] * np.asarray(X, np.float64)

    def dual(lam):
        v = M.T @ lam
        return 0.5 * v @ v - lam.sum(), M @ v - 1.0

    res = minimize(dual, np.zeros(len(M)), jac=True, method="L-BFGS-B", bounds=[(0, None)] * len(M),
                   options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10000})
    w = M.T @ res.x
    w_hat = w / np.linalg.norm(w)
    return w_hat, float(np.min(M @ w_hat))


def optimal_margin(gamma_svm: float, leak: float) -> float:
    """q* = (1 + α_leak)/4·γ_SVM, the best normalized margin on symmetric data."""
    return (1 + leak) / 4 * gamma_svm


def train_two_layer(params, X, y, leak, *, lr, steps: int, log_every: int | None = None,
                    save_steps: list[int] | None = None):
    """Plain GD on the mean logistic loss; returns ``(params_final, params_logged)`` at every
    ``log_every``-th step, or at the steps ``save_steps`` (e.g. log-spaced; the last one ends the run)."""
    grad = jax.grad(logistic_loss)

    def step(p):
        return jax.tree.map(lambda a, g: a - lr * g, p, grad(p, X, y, leak))

    if save_steps is not None:
        return scan_at(step, params, save_steps)
    return scan_log(step, params, steps, log_every)
