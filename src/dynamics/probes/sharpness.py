"""Sharpness probe: top Hessian eigenvalue of the training loss, warm-started between measurements."""

import jax
from jax.flatten_util import ravel_pytree

from dynamics.curvature import top_eigenvalue
from dynamics.probes.base import PROBES, Probe, ProbeContext


def _subset(dataset, n_examples):
    n = dataset.n_train if n_examples is None else min(n_examples, dataset.n_train)
    return dataset.x_train[:n], dataset.y_train[:n]


@PROBES.register("sharpness")
def sharpness(ctx: ProbeContext, params, key, *, every: int, n_examples: int | None = None,
              tol: float = 1e-3, max_iters: int = 100, **_) -> Probe:
    """λ_max(∇²L) on the first ``n_examples`` training examples (all if None), at the iterate.

    Metrics: ``sharpness``, ``sharpness_matvecs``, ``sharpness_converged``, ``sharpness_residual``.
    """
    x, y = _subset(ctx.dataset, n_examples)
    flat, unravel = ravel_pytree(params)
    init_vector = unravel(jax.random.normal(key, flat.shape, flat.dtype))

    @jax.jit
    def solve(params, vector, key, x, y):
        def loss_fn(p):
            return ctx.loss(ctx.apply_fn(p, x), y)

        return top_eigenvalue(loss_fn, params, key=key, tol=tol, max_iters=max_iters, init=vector)

    def measure(params, opt_state, vector, key):
        del opt_state
        res = solve(params, vector, key, x, y)
        metrics = {"sharpness": res.value, "sharpness_matvecs": res.num_matvecs,
                   "sharpness_converged": res.converged, "sharpness_residual": res.residual}
        return metrics, res.vector

    return Probe("sharpness", every, init_vector, measure)
