"""Curvature of a loss: Hessian-vector products, top-k eigenpairs, traces, spectral densities, and
optimizer-aware and spherical sharpness.

Public API:

* ``hvp(loss_fn, params, v)``, ``flat_hvp(loss_fn, params)``;
* ``top_eigenvalue(loss_fn, params, *, key, tol, max_iters, init, method) -> EigResult`` (Lanczos by
  default, ``method="power"`` for power iteration);
* ``top_eigenvalues(loss_fn, params, k, *, key, method, tol, max_iters, init) -> TopKResult``
  (``"lanczos" | "power" | "lobpcg"``), ``eigsh_top_k(matvec, V0, ...)`` on flat operators;
* ``hessian_trace(loss_fn, params, *, key, num_samples, method) -> TraceEstimate``;
* ``spectral_density(loss_fn, params, *, key, num_probes, order, ...) -> (grid, density)``;
* ``adaptive_preconditioner(opt_state, ...)``, ``preconditioned_sharpness(loss_fn, params, precond, k,
  ...)`` and the thresholds ``gd_threshold``, ``heavy_ball_threshold``, ``nesterov_threshold``,
  ``adam_threshold``;
* ``spherical_sharpness(loss_fn, params, k, ...)``, ``effective_lr(lr, params)``.

The entry points that take a ``loss_fn`` (``top_eigenvalue(s)``, ``hessian_trace``,
``spectral_density``, ``preconditioned_sharpness``, ``spherical_sharpness``) compile themselves: called
from a notebook without ``jax.jit`` they run a cached compiled solve, with the arrays ``loss_fn``
closes over passed as arguments (``dynamics.compiled``); inside your own ``jax.jit`` they trace inline.
``fn.raw`` is the uncompiled function.
"""

from dynamics.curvature.density import gaussian_density, slq_nodes_weights, spectral_density
from dynamics.curvature.hvp import flat_hvp, hvp
from dynamics.curvature.lanczos import lanczos_ritz, lanczos_top_k
from dynamics.curvature.power import EigResult, power_iteration, top_eigenvalue
from dynamics.curvature.preconditioned import (adam_threshold, adaptive_preconditioner,
                                               find_adaptive_state, gd_threshold,
                                               heavy_ball_threshold, nesterov_threshold,
                                               preconditioned_sharpness)
from dynamics.curvature.spherical import (SphericalSharpness, effective_lr, normalize_params,
                                          param_norm, spherical_sharpness)
from dynamics.curvature.topk import (TopKResult, block_power_top_k, eigsh_top_k, lobpcg_top_k,
                                     top_eigenvalues)
from dynamics.curvature.trace import TraceEstimate, hessian_trace, trace_estimate

__all__ = [
    "EigResult",
    "SphericalSharpness",
    "TopKResult",
    "TraceEstimate",
    "adam_threshold",
    "adaptive_preconditioner",
    "block_power_top_k",
    "effective_lr",
    "eigsh_top_k",
    "find_adaptive_state",
    "flat_hvp",
    "gaussian_density",
    "gd_threshold",
    "hessian_trace",
    "heavy_ball_threshold",
    "hvp",
    "lanczos_ritz",
    "lanczos_top_k",
    "lobpcg_top_k",
    "nesterov_threshold",
    "normalize_params",
    "param_norm",
    "power_iteration",
    "preconditioned_sharpness",
    "slq_nodes_weights",
    "spectral_density",
    "spherical_sharpness",
    "top_eigenvalue",
    "top_eigenvalues",
    "trace_estimate",
]
