"""Implicit-bias flows: diagonal models, label-noise SGD and its limiting flow, mirror descent, margins.

Pure JAX (use float64: ``jax.config.update("jax_enable_x64", True)``); scipy only for reference oracles
(min-ℓ1 interpolation, the linear SVM). Public API:

* diagonal models (``dynamics.flows.diagonal``): ``diag_map(kind, w, depth)`` for ``uu_minus_vv`` (u⊙u −
  v⊙v), ``uv`` and ``power`` (u^D − v^D); ``sparse_regression``; ``loss``; the exact ``hessian_trace``;
  ``label_noise_step``, ``run_label_noise`` (c = σ²/B), ``run_gd``; ``relative_error``,
  ``off_support_mass``;
* the label-noise limit (``dynamics.flows.manifold``): ``gradient_flow_limit`` (Φ),
  ``gauss_newton_project``, ``tangent_projection``, ``label_noise_flow`` (dw/dt = −(c/4)P_T∇tr∇²L,
  t = η²·steps);
* mirror descent (``dynamics.flows.mirror``): ``MirrorModel`` (G, ∇R, (∇R)⁻¹, R), ``gd_vs_mirror``,
  ``matrix_sensing``, ``matrix_gd_vs_mirror`` (UUᵀ control), ``lie_bracket``, ``max_lie_bracket``;
* kernel vs rich (``dynamics.flows.woodworth``): ``woodworth_potential``, ``argmin_woodworth``,
  ``min_l2_interpolant``, ``min_weighted_l1_interpolant``;
* margins (``dynamics.flows.margin``): ``init_two_layer``, ``two_layer_apply``,
  ``symmetric_separable_data``, ``train_two_layer``, ``normalized_margin``, ``linearity``,
  ``effective_linear``, ``svm_direction``, ``optimal_margin``;
* central flows (``dynamics.flows.central*``): ``run_central_flows(loss_fn, params, data, opt, steps,
  settings, key=...)`` with ``CentralFlowSettings`` → ``CentralFlowsResult``; optimizers ``FlowOptimizer``
  (``central_gd``, ``central_rmsprop``, ``central_scalar_rmsprop``); steps ``central_step``,
  ``central_substep``, ``stable_step``, ``discrete_step``, ``gd_sigma2``; the SDCP ``solve_sdcp``,
  ``solve_sdcp_svec``, ``SDCPResult``;
* ``scan_log(step, carry, steps, log_every)``, ``log_steps``.
"""

from dynamics.flows.central import (central_step, central_substep, discrete_step, gd_sigma2,
                                    stable_step)
from dynamics.flows.central_optim import FlowOptimizer
from dynamics.flows.central_optim import gd as central_gd
from dynamics.flows.central_optim import rmsprop as central_rmsprop
from dynamics.flows.central_optim import scalar_rmsprop as central_scalar_rmsprop
from dynamics.flows.central_run import CentralFlowSettings, CentralFlowsResult, run_central_flows
from dynamics.flows.central_sdcp import SDCPResult, solve_sdcp, solve_sdcp_svec
from dynamics.flows.diagonal import (KINDS, diag_map, hessian_trace, init_params, label_noise_step, loss,
                                     off_support_mass, relative_error, run_gd, run_label_noise,
                                     sparse_regression, split)
from dynamics.flows.manifold import (gauss_newton_project, gradient_flow_limit, label_noise_flow,
                                     tangent_projection)
from dynamics.flows.margin import (effective_linear, init_two_layer, leaky_relu, linearity,
                                   logistic_loss, normalized_margin, optimal_margin, svm_direction,
                                   symmetric_separable_data, train_two_layer, two_layer_apply)
from dynamics.flows.mirror import (MirrorModel, gd_vs_mirror, h_power, h_power_inv, lie_bracket,
                                   matrix_gd_vs_mirror, matrix_sensing, max_lie_bracket)
from dynamics.flows.scan import log_steps, scan_log
from dynamics.flows.woodworth import (argmin_woodworth, min_l2_interpolant, min_weighted_l1_interpolant,
                                      woodworth_potential, woodworth_q)

__all__ = [
    "CentralFlowSettings", "CentralFlowsResult", "FlowOptimizer", "SDCPResult", "central_gd",
    "central_rmsprop", "central_scalar_rmsprop", "central_step", "central_substep", "discrete_step",
    "gd_sigma2", "run_central_flows", "solve_sdcp", "solve_sdcp_svec", "stable_step",
    "KINDS", "MirrorModel", "argmin_woodworth", "diag_map", "effective_linear", "gauss_newton_project",
    "gd_vs_mirror", "gradient_flow_limit", "h_power", "h_power_inv", "hessian_trace", "init_params",
    "init_two_layer", "label_noise_flow", "label_noise_step", "leaky_relu", "lie_bracket", "linearity",
    "log_steps", "logistic_loss", "loss", "matrix_gd_vs_mirror", "matrix_sensing", "max_lie_bracket",
    "min_l2_interpolant", "min_weighted_l1_interpolant", "normalized_margin", "off_support_mass",
    "optimal_margin", "relative_error", "run_gd", "run_label_noise", "scan_log", "sparse_regression",
    "split", "svm_direction", "symmetric_separable_data", "tangent_projection", "train_two_layer",
    "two_layer_apply", "woodworth_potential", "woodworth_q",
]
