"""Curvature probes: sharpness (top-k Hessian eigenvalues), preconditioned sharpness λ_max(P⁻¹H) for
Adam/RMSprop, spherical sharpness of scale-invariant nets, and the Hessian trace.

All are warm-started from the previous measurement's eigenvectors, run on a fixed subset of the training
data (the first ``n_examples``), and can measure at the iterate θ_t or at the midpoint (θ_t + θ_{t+1})/2
of consecutive iterates (``where``), which removes most of the period-2 sawtooth at the edge of
stability.
"""

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from dynamics.curvature import (adaptive_preconditioner, effective_lr, hessian_trace,
                                preconditioned_sharpness, spherical_sharpness, top_eigenvalues)
from dynamics.curvature.topk import initial_block
from dynamics.errors import check
from dynamics.curvature.ggn import ggn_top_eigenvalues, output_loss
from dynamics.optim.thresholds import stability_of
from dynamics.losses import LOSSES
from dynamics.probes.base import PROBES, Probe, ProbeContext
from dynamics.probes.tracking import Growth, check_threshold, threshold_fn

WHERE = ("iterate", "midpoint")
METHODS = ("lanczos", "power", "lobpcg")


def _curvature_probe(name, ctx: ProbeContext, params, key, *, every, n_examples, where, loss, solve,
                     init_state, metrics):
    """Shared plumbing: data subset, measurement point, objective, jit, warm-start state."""
    check(where in WHERE, f"probes.{name}.where", where, " | ".join(WHERE))
    n = ctx.dataset.n_train if n_examples is None else min(n_examples, ctx.dataset.n_train)
    x, y = ctx.dataset.x_train[:n], ctx.dataset.y_train[:n]
    train_x, train_y = ctx.dataset.x_train, ctx.dataset.y_train
    objective = ctx.loss if loss is None else LOSSES.get(loss)

    def fn(state, probe_state, key, x, y, train_x, train_y):
        point = state.params
        if where == "midpoint":
            nxt = ctx.step_fn(state, train_x, train_y)[0].params
            point = jax.tree.map(lambda a, b: (a + b) / 2, point, nxt)

        def loss_fn(p):
            return objective(ctx.apply_fn(p, x), y)

        loss_fn.outputs = lambda p: ctx.apply_fn(p, x)  # for output-space operators (the GGN)
        loss_fn.targets = y
        result, new_state = solve(loss_fn, point, state, probe_state, key)
        # keep the previous warm start where this measurement is not finite (e.g. Adam at step 0)
        new_state = jax.tree.map(lambda n, o: jnp.where(jnp.all(jnp.isfinite(n)), n, o), new_state,
                                 probe_state)
        return metrics(result), new_state

    return Probe(name, every, init_state, fn, (x, y, train_x, train_y))


def _eigen_probe(name, ctx: ProbeContext, params, key, *, solve, k, track_fraction, k_max,
                 threshold, **common) -> Probe:
    """A top-``k`` eigenvalue probe; with ``track_fraction`` its block grows by itself from ``k`` up
    to ``k_max`` (:mod:`dynamics.probes.tracking`)."""
    metrics = _eigen_metrics(name)
    if track_fraction is None:
        return _curvature_probe(name, ctx, params, key, solve=solve, metrics=metrics,
                                init_state=_stack(initial_block(params, k, key), params), **common)
    check_threshold(name, ctx.optimizer, threshold)
    growth = Growth(name, float(track_fraction), int(k_max))
    threshold_of = threshold_fn(ctx.optimizer, ctx.hparams, threshold)

    def solve_tracked(loss_fn, point, state, vectors, key):
        res, vectors = solve(loss_fn, point, state, vectors, key)
        return (res, threshold_of(state)), vectors

    def tracked_metrics(out):
        res, value = out
        return {**metrics(res), f"{name}_threshold": value}

    block = _stack(initial_block(params, k_max, key), params)
    probe = _curvature_probe(name, ctx, params, key, solve=solve_tracked, metrics=tracked_metrics,
                             init_state=growth.initial_state(block, k), **common)
    return probe._replace(growth=growth)


def _eigen_metrics(prefix):
    def metrics(res):
        out = {prefix: res.values[0], f"{prefix}_matvecs": res.num_matvecs,
               f"{prefix}_converged": jnp.all(res.converged)}
        for i in range(1, res.values.shape[0]):
            out[f"{prefix}_{i + 1}"] = res.values[i]
        return out

    return metrics


def _sharpness(name, ctx: ProbeContext, params, key, *, every: int, n_examples=None, tol=1e-3,
               max_iters=100, method="lanczos", k=1, where="iterate", loss=None,
               track_fraction=None, k_max=8, threshold=None, **_) -> Probe:
    check(method in METHODS, f"probes.{name}.method", method, " | ".join(METHODS))

    def solve(loss_fn, point, state, vectors, key):
        res = top_eigenvalues(loss_fn, point, _rows(vectors), key=key, method=method, tol=tol,
                              max_iters=max_iters, init=vectors)
        return res, res.vectors

    return _eigen_probe(name, ctx, params, key, solve=solve, k=k, track_fraction=track_fraction,
                        k_max=k_max, threshold=threshold, every=every, n_examples=n_examples, where=where,
                        loss=loss)


@PROBES.register("sharpness")
def sharpness(ctx: ProbeContext, params, key, **options) -> Probe:
    """Top-``k`` eigenvalues of ∇²L of the training loss, or of ``loss`` if given (``sharpness``,
    ``sharpness_2``, …, ``sharpness_matvecs``, ``sharpness_converged``)."""
    return _sharpness("sharpness", ctx, params, key, **options)


@PROBES.register("loss_sharpness")
def loss_sharpness(ctx: ProbeContext, params, key, **options) -> Probe:
    """Like ``sharpness`` for a second loss (default ``mse``), logged as ``loss_sharpness``: e.g. the
    sharpness of L while training on √L."""
    return _sharpness("loss_sharpness", ctx, params, key, **{"loss": "mse", **options})


@PROBES.register("precond_sharpness")
def precond_sharpness(ctx: ProbeContext, params, key, *, every: int, n_examples=None, tol=1e-3,
                      max_iters=100, method="lanczos", k=1, where="iterate", loss=None,
                      convention="locuslab", track_fraction=None, k_max=8, threshold=None,
                      **_) -> Probe:
    """λ_max(P⁻¹∇²L) with P Adam's / RMSprop's diagonal preconditioner (``precond_sharpness``).

    ``convention="locuslab"``: P = (1 − β1^t)(√ν̂ + ε) (the update is η P⁻¹ m with m the EMA
    momentum, threshold (2 + 2β1)/((1 − β1)η)); ``"init2winit"`` omits (1 − β1^t). Optimizers in the
    threshold table (amsgrad, adabelief, nadam, radam, ...) use the table's own reader. Not measured at
    step 0, before the optimizer has a second-moment estimate (NaN there).
    """
    check(method in METHODS, "probes.precond_sharpness.method", method, " | ".join(METHODS))

    stability = stability_of(ctx.optimizer)
    table = stability.preconditioner if stability is not None and convention == "locuslab" else None

    def solve(loss_fn, point, state, vectors, key):
        # the threshold table's reader (amsgrad's ν_max, adabelief's s, radam's rectification, ...);
        # hyperparameters from the (traced, per-point) state; otherwise Adam/RMSprop's generic reader
        precond = (table(state.opt_state, None) if table is not None
                   else adaptive_preconditioner(state.opt_state, convention=convention))
        # undefined before the first update (RMSprop's ν = 0 would give P = √ε): NaN at step 0
        precond = jax.tree.map(lambda p: jnp.where(state.step > 0, p, jnp.nan), precond)
        res = preconditioned_sharpness(loss_fn, point, precond, _rows(vectors), key=key,
                                       method=method, tol=tol, max_iters=max_iters, init=vectors)
        return res, res.vectors

    return _eigen_probe("precond_sharpness", ctx, params, key, solve=solve, k=k,
                        track_fraction=track_fraction, k_max=k_max, threshold=threshold, every=every, n_examples=n_examples,
                        where=where, loss=loss)


def loss_name(ctx: ProbeContext, loss: str | None) -> str:
    """The registered name of the probe's loss (``loss`` if given, else the training loss)."""
    if loss is not None:
        return loss
    return next(n for n in LOSSES.names() if LOSSES.get(n) is ctx.loss)


@PROBES.register("ggn_sharpness")
def ggn_sharpness(ctx: ProbeContext, params, key, *, every: int, n_examples=None, tol=1e-3,
                  max_iters=100, method="lanczos", k=1, where="iterate", loss=None,
                  operator="ggn", track_fraction=None, k_max=8, threshold=None, **_) -> Probe:
    """Top-``k`` eigenvalues of the Gauss-Newton matrix G = JᵀH_ℓJ (``ggn_sharpness``, …), or of the
    empirical Fisher (``operator="empirical_fisher"``), on the probe's examples: ``ggn_vp`` with the
    closed-form output Hessian of ``mse`` / ``cross_entropy`` (autodiff for other losses). λ_max(G)
    ≤ λ_max(H) + what the residual term removes; for MSE near a global minimum the two agree."""
    check(method in METHODS, "probes.ggn_sharpness.method", method, " | ".join(METHODS))
    check(operator in ("ggn", "empirical_fisher"), "probes.ggn_sharpness.operator", operator,
          "ggn | empirical_fisher")
    name = loss_name(ctx, loss)

    def solve(loss_fn, point, state, vectors, key):
        res = ggn_top_eigenvalues(loss_fn.outputs, output_loss(name, loss_fn.targets), point,
                                  _rows(vectors), key=key, operator=operator, method=method,
                                  tol=tol, max_iters=max_iters, init=vectors)
        return res, res.vectors

    return _eigen_probe("ggn_sharpness", ctx, params, key, solve=solve, k=k,
                        track_fraction=track_fraction, k_max=k_max, threshold=threshold, every=every, n_examples=n_examples,
                        where=where, loss=loss)


@PROBES.register("spherical_sharpness")
def spherical(ctx: ProbeContext, params, key, *, every: int, n_examples=None, tol=1e-3,
              max_iters=100, method="lanczos", where="iterate", loss=None, **_) -> Probe:
    """Spherical sharpness λ_max(∇²L(θ/‖θ‖)), ``param_norm`` ‖θ‖, ``eta_eff`` = η/‖θ‖², and their
    product ``spherical_sharpness_x_eta_eff`` (≈ 2 at the edge of stability)."""
    def solve(loss_fn, point, state, vectors, key):
        res = spherical_sharpness(loss_fn, point, 1, key=key, method=method, tol=tol,
                                  max_iters=max_iters, init=vectors)
        eta_eff = effective_lr(state.opt_state.hyperparams["learning_rate"], point)
        return (res, eta_eff), res.eig.vectors

    def metrics(out):
        res, eta_eff = out
        return {"spherical_sharpness": res.value, "param_norm": res.norm, "eta_eff": eta_eff,
                "spherical_sharpness_x_eta_eff": res.value * eta_eff,
                "spherical_sharpness_matvecs": res.eig.num_matvecs}

    return _curvature_probe("spherical_sharpness", ctx, params, key, every=every,
                            n_examples=n_examples, where=where, loss=loss, solve=solve,
                            init_state=_stack(initial_block(params, 1, key), params),
                            metrics=metrics)


@PROBES.register("trace")
def trace(ctx: ProbeContext, params, key, *, every: int, n_examples=None, num_samples=20,
          method="hutchpp", where="iterate", loss=None, **_) -> Probe:
    """Stochastic estimate of tr ∇²L (``hessian_trace`` and ``hessian_trace_stderr``)."""

    def solve(loss_fn, point, state, probe_state, key):
        return hessian_trace(loss_fn, point, key=key, num_samples=num_samples, method=method), None

    def metrics(est):
        return {"hessian_trace": est.estimate, "hessian_trace_stderr": est.stderr}

    return _curvature_probe("trace", ctx, params, key, every=every, n_examples=n_examples,
                            where=where, loss=loss, solve=solve, init_state=None, metrics=metrics)


def _rows(vectors) -> int:
    """The number of stacked vectors (the block size ``k``, static)."""
    return jax.tree.leaves(vectors)[0].shape[0]


def _stack(block, params):
    """Random start vectors (flat block ``(k, n)``) as a stacked pytree shaped like ``params``."""
    unravel = ravel_pytree(params)[1]
    return jax.vmap(unravel)(block)
