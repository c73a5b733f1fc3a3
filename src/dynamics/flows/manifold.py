"""The label-noise limiting flow on the manifold of minimizers Γ = {w : f(w) = y} (Li, Wang, Arora 2022).

With L = (1/2n)Σ(fᵢ − yᵢ)² and label-noise SGD of step η and noise constant c = σ²/B, the iterates at
step k = t/η² converge (η → 0) to the deterministic Riemannian gradient flow

    dw/dt = −(c/4)·P_T(w)·∇ tr∇²L(w),   w(0) = Φ(w₀),

where Φ is the gradient-flow limit map and P_T the orthogonal projection onto T_wΓ = ker ∂f(w). The flow is
integrated with explicit Euler steps followed by Gauss–Newton re-projection onto Γ.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from dynamics.flows.scan import scan_log

Predict = Callable[[jax.Array, jax.Array], jax.Array]  # predict(w, Z) -> f(w) ∈ ℝⁿ


def gauss_newton_project(predict: Predict, w, Z, y, iters: int = 3):
    """Move ``w`` onto Γ = {f(w) = y} by minimum-norm Gauss–Newton steps w ← w − Jᵀ(JJᵀ)⁻¹(f(w) − y)."""

    def body(_, w):
        J = jax.jacfwd(predict)(w, Z)
        r = predict(w, Z) - y
        return w - J.T @ jnp.linalg.solve(J @ J.T, r)

    return jax.lax.fori_loop(0, iters, body, w)


def tangent_projection(J, g):
    """P_T g = g − Jᵀ(JJᵀ)⁻¹Jg: the component of ``g`` in ker J (J of shape n × D, full row rank)."""
    return g - J.T @ jnp.linalg.solve(J @ J.T, J @ g)


def gradient_flow_limit(predict: Predict, w0, Z, y, *, lr: float, steps: int, polish: int = 5):
    """Φ(w₀): ``steps`` GD steps of size ``lr`` on L (a discretized gradient flow), then Gauss–Newton
    polishing onto Γ. ``steps`` and ``polish`` static."""
    grad = jax.grad(lambda p: 0.5 * jnp.mean((predict(p, Z) - y) ** 2))
    w = jax.lax.fori_loop(0, steps, lambda _, w: w - lr * grad(w), w0)
    return gauss_newton_project(predict, w, Z, y, polish)


def label_noise_flow(predict: Predict, trace_fn: Callable, w0, Z, y, *, c, dt: float, steps: int,
                     log_every: int, constant: float = 0.25, project_iters: int = 2):
    """Euler-integrate dw/dt = −constant·c·P_T∇tr∇²L(w) for ``steps`` steps of length ``dt`` from ``w0``
    (which should lie on Γ, e.g. :func:`gradient_flow_limit`), re-projecting onto Γ after each step.

    ``trace_fn(w, Z, y) -> tr∇²L(w)``. Returns ``(w_final, w_logged)`` at steps 0, log_every, ..., steps
    (times t = step·dt). ``constant = 1/4`` is the label-noise limit; other values are controls.
    """
    grad_trace = jax.grad(trace_fn)

    def step(w):
        J = jax.jacfwd(predict)(w, Z)
        w = w - dt * constant * c * tangent_projection(J, grad_trace(w, Z, y))
        return gauss_newton_project(predict, w, Z, y, project_iters)

    return scan_log(step, w0, steps, log_every)
