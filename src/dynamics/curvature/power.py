"""Top (largest algebraic) Hessian eigenvalue: Lanczos (default) or power iteration on HVPs."""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from dynamics.compiled import self_compiling
from dynamics.curvature.hvp import flat_hvp
from dynamics.curvature.lanczos import lanczos_top_k

PyTree = object


class EigResult(NamedTuple):
    """Result of an eigenvalue solve (a pytree, so it can be returned from ``jit``).

    Attributes:
      value: the signed eigenvalue (largest algebraic).
      vector: its unit-norm eigenvector, a pytree shaped like the parameters.
      num_matvecs: Hessian-vector products used.
      converged: whether the residual reached the tolerance.
      residual: ``‖Hv − λv‖ / scale`` at the returned pair (scale: ``|λ|`` for Lanczos, the
        spectral-radius estimate for power iteration).
    """

    value: jax.Array
    vector: PyTree
    num_matvecs: jax.Array
    converged: jax.Array
    residual: jax.Array


def power_iteration(matvec: Callable[[jax.Array], jax.Array], v0: jax.Array, *, tol: float,
                    max_iters: int):
    r"""Largest algebraic eigenvalue of a symmetric operator given as ``matvec`` on flat vectors.

    Phase 0 runs power iteration on :math:`A`; it converges to the eigenvalue of largest magnitude,
    :math:`\mu`. If :math:`\mu < 0` the top of the spectrum is elsewhere, so phase 1 runs power
    iteration on :math:`A - \mu I` (positive semi-definite), restarted from ``v0``, and shifts back.
    Both phases stop when :math:`\|Av - \lambda v\| \le \mathrm{tol}\cdot|\mu|` (relative to the
    spectral radius), or when ``max_iters`` matvecs in total have been spent.

    Returns ``(value, vector, num_matvecs, converged, relative_residual)``.
    """
    dtype = v0.dtype
    v0 = v0 / jnp.linalg.norm(v0)
    tol = jnp.asarray(tol, dtype)

    def cond(state):
        _, _, _, it, phase, _, _ = state
        return (phase < 2) & (it < max_iters)

    def body(state):
        v, _, _, it, phase, shift, scale = state
        w = matvec(v) - shift * v
        mu = jnp.vdot(v, w)
        r = jnp.linalg.norm(w - mu * v)
        lam = mu + shift
        scale = jnp.where(phase == 0, jnp.abs(mu), scale)
        tiny = jnp.finfo(dtype).tiny
        rel = r / jnp.maximum(scale, tiny)
        done = rel <= tol
        # Phase 0 converged on a negative eigenvalue: restart on the shifted operator.
        to_shift = done & (phase == 0) & (lam < 0)
        w_norm = jnp.linalg.norm(w)
        v_next = jnp.where(w_norm > tiny, w / jnp.maximum(w_norm, tiny), v)
        new_phase = jnp.where(to_shift, 1, jnp.where(done, 2, phase))
        new_v = jnp.where(to_shift, v0, jnp.where(done, v, v_next))
        new_shift = jnp.where(to_shift, lam, shift)
        return new_v, lam, rel, it + 1, new_phase, new_shift, scale

    zero = jnp.zeros((), dtype)
    init = (v0, zero, jnp.asarray(jnp.inf, dtype), jnp.asarray(0), jnp.asarray(0), zero, zero)
    v, lam, rel, it, phase, _, _ = jax.lax.while_loop(cond, body, init)
    return lam, v, it, phase == 2, rel


TOP_METHODS = ("lanczos", "power")


@self_compiling(static=("max_iters", "method"))
def top_eigenvalue(loss_fn: Callable[[PyTree], jax.Array], params: PyTree, *, key: jax.Array,
                   tol: float = 1e-4, max_iters: int = 200, init: PyTree | None = None,
                   method: str = "lanczos") -> EigResult:
    r"""Largest algebraic eigenvalue of the Hessian :math:`\nabla^2 L(\theta)` (the sharpness).

    Matrix-free on Hessian-vector products (forward-over-reverse), optionally warm-started from the
    previous eigenvector ``init`` (during training the top eigenvector moves slowly, so a warm start
    needs a few matvecs). The returned eigenvalue is signed (largest algebraic, not largest in
    magnitude).

    Compiles itself: called with concrete arrays it runs a cached jitted solve, with the arrays that
    ``loss_fn`` closes over passed as arguments (:mod:`dynamics.compiled`); inside your own
    ``jax.jit`` it traces inline.

    Args:
      loss_fn: ``loss_fn(params) -> scalar``.
      params: the point at which the Hessian is taken (a pytree).
      key: PRNG key for the random start (used only when ``init`` is None).
      tol: relative tolerance on the residual. ``"lanczos"``: ``‖Hv − λv‖ ≤ tol·|λ|``;
        ``"power"``: ``‖Hv − λv‖ ≤ tol·ρ`` with ρ the spectral radius estimate. The eigenvalue error is
        at most that bound and typically its square over the spectral gap.
      max_iters: maximum number of Hessian-vector products.
      init: starting vector, a pytree shaped like ``params``.
      method: ``"lanczos"`` (default: thick-restart Lanczos with full re-orthogonalisation, several
        times fewer HVPs) or ``"power"`` (power iteration; when the eigenvalue of largest magnitude is
        negative, a shifted second phase finds the largest algebraic one). A one-parameter problem
        always uses ``"power"``.

    Returns:
      ``EigResult`` with ``.value``, ``.vector`` (pytree), ``.num_matvecs``, ``.converged``,
      ``.residual``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> loss = lambda p: 0.5 * (3.0 * p["a"] ** 2 + p["b"] ** 2)
      >>> res = top_eigenvalue(loss, {"a": 1.0, "b": 1.0}, key=jax.random.key(0), tol=1e-6)
      >>> round(float(res.value), 4)
      3.0
    """
    if method not in TOP_METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(TOP_METHODS)}.")
    matvec, flat, unravel = flat_hvp(loss_fn, params)
    if init is None:
        v0 = jax.random.normal(key, flat.shape, flat.dtype)
    else:
        v0 = ravel_pytree(init)[0].astype(flat.dtype)
    if method == "lanczos" and flat.shape[0] >= 2:
        vals, X, rel, it, converged = lanczos_top_k(matvec, v0, 1, tol=tol, max_iters=max_iters)
        return EigResult(vals[0], unravel(X[0]), it, converged, rel[0])
    lam, v, it, converged, rel = power_iteration(matvec, v0, tol=tol, max_iters=max_iters)
    return EigResult(lam, unravel(v), it, converged, rel)
