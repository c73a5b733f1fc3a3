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
* ``spherical_sharpness(loss_fn, params, k, ...)``, ``effective_lr(lr, params)``;
* third derivatives (``third``): ``eigenvalue_gradient`` ∇S = ∇(uᵀH(w)u), ``hessian_inner_gradient``
  ∇⟨H, UXUᵀ⟩, ``third_vector``, ``third_vector_pairs``, ``hessian_quadratic``;
* ``EigenTracker`` (``tracking``): warm-started top-k that grows while the smallest tracked eigenvalue
  is above a fraction of a threshold, signs aligned, matvecs counted;
* the GGN and empirical Fisher (``ggn``): ``ggn_vp(apply_fn, loss_of_outputs, params, v)``,
  ``empirical_fisher_vp``, flat operators, ``ggn_top_eigenvalues``, ``ggn_trace``;
* ``batch_sharpness(loss_fn, params, data, *, key, batch_size, num_batches)``: E_B[g_BᵀH_Bg_B/‖g_B‖²]
  with its standard error (Edge of Stochastic Stability).

The entry points that take a ``loss_fn`` (``top_eigenvalue(s)``, ``hessian_trace``,
``spectral_density``, ``preconditioned_sharpness``, ``spherical_sharpness``) compile themselves: called
from a notebook without ``jax.jit`` they run a cached compiled solve, with the arrays ``loss_fn``
closes over passed as arguments (``dynamics.compiled``); inside your own ``jax.jit`` they trace inline.
``fn.raw`` is the uncompiled function.
"""

from dynamics.curvature.batch_sharpness import BatchSharpness, batch_indices, batch_sharpness
from dynamics.curvature.density import gaussian_density, slq_nodes_weights, spectral_density
from dynamics.curvature.ggn import (OutputLoss, cross_entropy_output_loss, empirical_fisher_vp,
                                    flat_empirical_fisher, flat_ggn, ggn_top_eigenvalues, ggn_trace,
                                    ggn_vp, mse_output_loss, output_hessian_vp, output_loss)
from dynamics.curvature.hvp import flat_hvp, hvp
from dynamics.curvature.lanczos import lanczos_ritz, lanczos_top_k
from dynamics.curvature.power import EigResult, power_iteration, top_eigenvalue
from dynamics.curvature.preconditioned import (adam_threshold, adaptive_preconditioner,
                                               find_adaptive_state, gd_threshold,
                                               heavy_ball_threshold, nesterov_threshold,
                                               preconditioned_sharpness)
from dynamics.curvature.spherical import (SphericalSharpness, effective_lr, normalize_params,
                                          param_norm, spherical_sharpness)
from dynamics.curvature.third import (eigenvalue_gradient, hessian_inner_gradient,
                                      hessian_quadratic, third_vector, third_vector_pairs)
from dynamics.curvature.topk import (TopKResult, block_power_top_k, eigsh_top_k, lobpcg_top_k,
                                     top_eigenvalues)
from dynamics.curvature.trace import TraceEstimate, hessian_trace, trace_estimate
from dynamics.curvature.tracking import (EigenTracker, TrackedEigs, align_signs, hessian_matvec,
                                         rayleigh_ritz)

__all__ = [
    "BatchSharpness",
    "EigResult",
    "EigenTracker",
    "OutputLoss",
    "SphericalSharpness",
    "TopKResult",
    "TraceEstimate",
    "TrackedEigs",
    "adam_threshold",
    "adaptive_preconditioner",
    "align_signs",
    "batch_indices",
    "batch_sharpness",
    "block_power_top_k",
    "cross_entropy_output_loss",
    "effective_lr",
    "eigenvalue_gradient",
    "eigsh_top_k",
    "empirical_fisher_vp",
    "find_adaptive_state",
    "flat_empirical_fisher",
    "flat_ggn",
    "flat_hvp",
    "gaussian_density",
    "gd_threshold",
    "ggn_top_eigenvalues",
    "ggn_trace",
    "ggn_vp",
    "heavy_ball_threshold",
    "hessian_inner_gradient",
    "hessian_matvec",
    "hessian_quadratic",
    "hessian_trace",
    "hvp",
    "lanczos_ritz",
    "lanczos_top_k",
    "lobpcg_top_k",
    "mse_output_loss",
    "nesterov_threshold",
    "normalize_params",
    "output_hessian_vp",
    "output_loss",
    "param_norm",
    "power_iteration",
    "preconditioned_sharpness",
    "rayleigh_ritz",
    "slq_nodes_weights",
    "spectral_density",
    "spherical_sharpness",
    "third_vector",
    "third_vector_pairs",
    "top_eigenvalue",
    "top_eigenvalues",
    "trace_estimate",
]
