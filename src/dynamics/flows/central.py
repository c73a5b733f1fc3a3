r"""Central flows (Cohen, Damian, Talwalkar, Kolter, Lee, ICLR 2025, arXiv 2410.24206): one step of each
process on flat parameter vectors.

With the preconditioned form :math:`w_{t+1} = w_t - P_t^{-1}\nabla L(w_t)` (``central_optim``), the
*central flow* is

.. math:: \frac{dw}{dt} = -P^{-1}\big[\nabla L + \tfrac12 \nabla\langle H, \Sigma\rangle\big],\qquad
          \frac{d\nu}{dt} = \tfrac{1-\beta_2}{\beta_2}\big[q(\nabla L) + \mathrm{diag}(H\Sigma H) - \nu\big],

time in steps (for GD, :math:`dw/dt = -\eta[\nabla L + \frac12\nabla\langle H,\Sigma\rangle]`). Effective
eigenpairs are those of :math:`A = P^{-1/2}HP^{-1/2}` (threshold 2); with :math:`V` the critical ones
(:math:`\lambda \ge` ``sdcp_threshold``, default 1.95) and :math:`U = P^{-1/2}V` (so :math:`U^\top PU = I`),
:math:`\Sigma = UXU^\top`, :math:`\nabla\langle H,\Sigma\rangle = \sum_{kl}X_{kl}G_{kl}`,
:math:`G_{kl} = \nabla_w(u_k^\top H u_l)`. Each Euler substep of length ``dt`` solves the SDCP of
``central_sdcp`` for :math:`X` on the margin :math:`U^\top(2P - H)U` linearised one substep ahead with
:math:`U` held fixed:

.. math:: \alpha = 2I - \Lambda + dt\,[\langle G_{ij}, P^{-1}\nabla L\rangle + 2U^\top\dot P_0U],\qquad
          \mathcal B[X] = dt\,[\tfrac12\textstyle\sum_{kl}\langle G_{ij}, P^{-1}G_{kl}\rangle X_{kl}
          + 2U^\top\dot P(X)U],

where :math:`\dot P = \dot P_0 + \dot P(X)` is the preconditioner's drift through :math:`d\nu/dt` (zero for
GD) and :math:`HU` is taken as :math:`2PU` (exact at the edge; it keeps :math:`\mathcal B` symmetric PSD,
avoiding the asymmetry the reference's :math:`PU\Lambda` has, which it symmetrises). The term
:math:`2-\lambda_i` is a restoring force: a locked eigenvalue drifting off 2 is pulled back within one
substep. The predicted time-averaged loss is :math:`L + \mathrm{tr}(X)` (:math:`= L + \mathrm{tr}(\Sigma)/\eta`
for GD, where :math:`U = \sqrt\eta V`). For one eigenvalue at the edge under GD the SDCP gives the closed
form :math:`\sigma^2 = \max(0, -2\langle\nabla L,\nabla S\rangle/\|\nabla S\|^2)` (:func:`gd_sigma2`).

The *stable flow* is the same with :math:`\Sigma \equiv 0` (gradient flow for GD). Substep 0 of a central
step uses the tracker's eigenpairs; later substeps refresh them by Rayleigh–Ritz on the tracked block
and its image (``3k`` HVPs, :func:`krylov_refresh`). Everything here is pure and jit-able; ``central_run`` drives the processes.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dynamics.curvature.hvp import hvp
from dynamics.curvature.third import third_vector_pairs
from dynamics.curvature.tracking import rayleigh_ritz
from dynamics.flows.central_optim import (FlowOptimizer, FlowState, discrete_transform, preconditioner,
                                          second_moment_target, state_rate)
from dynamics.flows.central_sdcp import smat, solve_sdcp_svec, svec, svec_weights

FlatLoss = Callable[[jax.Array, object], jax.Array]  # floss(w_flat, data) -> scalar


def gd_sigma2(grad: jax.Array, grad_s: jax.Array) -> jax.Array:
    r"""One-eigenvalue GD central flow: :math:`\sigma^2 = \max(0, -2\langle\nabla L,\nabla S\rangle/\|\nabla S\|^2)`."""
    return jnp.maximum(0.0, -2 * jnp.vdot(grad, grad_s) / jnp.vdot(grad_s, grad_s))


def _euler(opt, w, state, wdot, sdot, dt):
    return w + dt * wdot, FlowState(state.nu + dt * sdot.nu, state.count + dt * sdot.count)


def _drift_terms(opt: FlowOptimizer, state, g, U, p, s):
    """Preconditioner drift: (svec(2UᵀṖ₀U), M₂ with svec(2UᵀṖ(X)U) = M₂ svec(X), HU ≈ 2PU)."""
    n, k = g.shape[0], U.shape[0]
    P = lambda st: preconditioner(opt, st, n, g.dtype)  # noqa: E731
    rate0 = state_rate(opt, state, second_moment_target(opt, g, g))
    dp0 = jax.jvp(P, (state,), (rate0,))[1]
    a_drift = 2 * svec((U * dp0) @ U.T)
    c = (1 - opt.b2) / opt.b2
    HU = 2 * p * U
    i, j = np.triu_indices(k)

    def dp_pair(ii, jj, sij):
        dnu = c * sij * second_moment_target(opt, HU[ii], HU[jj])
        return jax.jvp(P, (state,), (FlowState(dnu, jnp.zeros_like(state.count)),))[1]

    DP = jax.vmap(dp_pair)(i, j, s)
    M2 = 2 * (s[:, None] * (U[i] * U[j])) @ DP.T
    return a_drift, 0.5 * (M2 + M2.T)


def _support_deltas(d, Q, V, p, dw):
    """Projections of ``dw`` onto Σ's directions (descending x), NaN off Σ's support (x = 0: a
    candidate eigenvalue below the edge, whose displacement the flow does not model)."""
    deltas = (Q.T @ (V @ (jnp.sqrt(p) * dw)))[::-1]
    x = d[::-1]
    return jnp.where(x > 1e-9 * jnp.maximum(x[0], jnp.finfo(x.dtype).tiny), deltas, jnp.nan)


def central_substep(floss: FlatLoss, opt: FlowOptimizer, w, state: FlowState, V, values, data, dt,
                    w_ref):
    """One Euler substep of the central flow with the critical block ``V`` ``(k_c, n)`` (effective
    eigenvectors, symmetric form) and its eigenvalues ``values`` ``(k_c,)``.

    Returns ``(w, state, info)``; ``info`` holds the loss, the SDCP solution ``X`` and its residual, the
    predicted loss, eig(X), eig(Σ) and the projections ``deltas`` of ``w_ref − w`` onto Σ's directions
    (:math:`\\delta = (UQ)^\\top P (w_{ref} - w)`, whose second moment the flow predicts as eig(X)).
    """
    n, k = w.shape[0], V.shape[0]
    f = lambda x: floss(x, data)  # noqa: E731
    loss, g = jax.value_and_grad(f)(w)
    p = preconditioner(opt, state, n, w.dtype)
    U = V / jnp.sqrt(p)
    s = jnp.asarray(svec_weights(k), w.dtype)
    Gh = s[:, None] * third_vector_pairs(f, w, U)
    a = svec(2 * jnp.eye(k, dtype=w.dtype) - jnp.diag(values)) + dt * (Gh @ (g / p))
    M = 0.5 * dt * (Gh @ (Gh / p).T)
    if opt.kind != "gd":
        a_drift, M2 = _drift_terms(opt, state, g, U, p, s)
        a, M = a + dt * a_drift, M + dt * M2
    res = solve_sdcp_svec(a, M, k)
    x = svec(res.X)
    wdot = -(g + 0.5 * x @ Gh) / p
    HU = 2 * p * U
    i, j = np.triu_indices(k)
    qX = jnp.tensordot(s * x, jax.vmap(lambda a, b: second_moment_target(opt, a, b))(HU[i], HU[j]), 1)
    sdot = state_rate(opt, state, second_moment_target(opt, g, g) + qX)
    w_new, state_new = _euler(opt, w, state, wdot, sdot, dt)
    d, Q = jnp.linalg.eigh(res.X)
    half = (Q * jnp.sqrt(jnp.maximum(d, 0))) @ Q.T
    info = dict(loss=loss, X=res.X, sdcp_residual=res.residual, predicted_loss=loss + jnp.trace(res.X),
                x_eigs=d[::-1], sigma_eigs=jnp.linalg.eigvalsh(half @ (U @ U.T) @ half)[::-1],
                deltas=_support_deltas(d, Q, V, p, w_ref - w), grad_norm=jnp.linalg.norm(g))
    return w_new, state_new, info


def stable_substep(floss: FlatLoss, opt: FlowOptimizer, w, state: FlowState, data, dt):
    """One Euler substep of the stable flow (Σ ≡ 0): dw/dt = −P⁻¹∇L, dν/dt from q(∇L)."""
    g = jax.grad(floss)(w, data)
    p = preconditioner(opt, state, w.shape[0], w.dtype)
    sdot = state_rate(opt, state, second_moment_target(opt, g, g))
    return _euler(opt, w, state, -g / p, sdot, dt)


def effective_matvec(floss: FlatLoss, opt: FlowOptimizer):
    """``matvec_fn((w, data, state), v) = P^{-1/2} H P^{-1/2} v`` for an ``EigenTracker``."""

    def matvec_fn(args, v):
        w, data, state = args
        sc = 1 / jnp.sqrt(preconditioner(opt, state, w.shape[0], w.dtype))
        return sc * hvp(lambda x: floss(x, data), w, sc * v)

    return matvec_fn


def krylov_refresh(matvec, V):
    """Top ``k`` Ritz pairs of ``span(V, AV)`` (``3k`` matvecs), signs aligned with ``V``'s rows.

    Rayleigh–Ritz on ``span(V)`` alone gives Ritz values *below* the true eigenvalues once the
    eigenvectors rotate out of the stale block (interlacing), so the SDCP of the later substeps held the
    Ritz values at 2 while the true top eigenvalue sat at 2.006–2.016 (GD, η = 0.9, three near-degenerate
    eigenvalues at the edge); one Krylov extension captures the first-order rotation.
    """
    k = V.shape[0]
    W = jax.vmap(matvec)(V)
    Q, _ = jnp.linalg.qr(jnp.concatenate([V, W]).T)
    vals, Y, _, _ = rayleigh_ritz(matvec, Q.T)
    Y = Y[:k]
    signs = jnp.where(jnp.sum(Y * V, axis=1) < 0, -1.0, 1.0).astype(V.dtype)
    return vals[:k], Y * signs[:, None]


def central_step(floss: FlatLoss, opt: FlowOptimizer, w, state, V, values, data, w_ref, *,
                 k_c: int, substeps: int):
    """One step (``substeps`` Euler substeps of length 1/substeps) of the central flow.

    ``V`` ``(k, n)`` and ``values`` ``(k,)`` are the tracked effective eigenpairs at ``w`` (descending);
    the top ``k_c`` (static, ≥ 1) enter the SDCP. Substeps after the first refresh the whole block by
    Rayleigh–Ritz on ``span(V, AV)`` at the current point (:func:`krylov_refresh`). Returns ``(w, state, V, info of substep 0)``.
    """
    dt = 1.0 / substeps
    mv = effective_matvec(floss, opt)

    def body(carry, i):
        w, state, V, values = carry

        def refresh(_):
            return krylov_refresh(lambda v: mv((w, data, state), v), V)

        values, V = jax.lax.cond(i > 0, refresh, lambda _: (values, V), None)
        w, state, info = central_substep(floss, opt, w, state, V[:k_c], values[:k_c], data, dt, w_ref)
        return (w, state, V, values), info

    (w, state, V, _), infos = jax.lax.scan(body, (w, state, V, values), jnp.arange(substeps))
    return w, state, V, jax.tree.map(lambda x: x[0], infos)


def stable_step(floss: FlatLoss, opt: FlowOptimizer, w, state, data, n_sub):
    """One step of the stable flow in ``n_sub`` (traced) Euler substeps."""
    dt = 1.0 / n_sub
    return jax.lax.fori_loop(0, n_sub, lambda _, c: stable_substep(floss, opt, *c, data, dt), (w, state))


def discrete_step(floss: FlatLoss, opt: FlowOptimizer, w, opt_state, data):
    """One step of the discrete optimizer (optax); returns ``(w, opt_state, loss)`` (loss before)."""
    loss, g = jax.value_and_grad(floss)(w, data)
    updates, opt_state = discrete_transform(opt).update(g, opt_state, w)
    return optax.apply_updates(w, updates), opt_state, loss


__all__ = ["central_step", "central_substep", "discrete_step", "effective_matvec", "gd_sigma2", "krylov_refresh",
           "smat", "stable_step", "stable_substep"]
