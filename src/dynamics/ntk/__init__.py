"""Neural tangent kernels and the kernel view of fine-tuning, in pure JAX (no neural-tangents).

Public API:

- ``empirical_ntk(apply_fn, params, x1, x2=None, *, method, trace_axes, batch_size)``: the
  empirical NTK, shape ``(N1, N2, O, O)`` (``trace_axes=(-1,)``: the mean over logits, as in
  neural-tangents). It compiles itself (cached; arrays ``apply_fn`` closes over become arguments)
  and ``method="auto"`` picks Jacobian contraction, NTK-vector products or structured per-layer
  Gram products (``dynamics.ntk.structured``) by a flop model of the shapes (``choose_method``); ``sign_kernel`` (SignGD) and ``asymmetric_sign_kernel`` (A-SignGD, sign on the
  training gradient); ``flat_jacobian``: the per-example Jacobians ``(N, O, P)`` they contract.
- ``infinite_width_kernels(x1, x2, *, depth, activation, w_std, b_std)``: NNGP and NTK of an
  infinitely wide ReLU / Erf MLP in NTK parameterization (``stax`` conventions); ``NTKMLP`` is its
  finite version.
- ``linearize`` / ``linearized_apply``: the first-order Taylor model around ``params0``.
- ``gradient_descent_mse``: closed-form outputs of the linearized model after GD on MSE for time
  ``t``.
- Solvers: ``kernel_regression`` (least squares with ridge), ``kernel_logistic_regression`` (on
  kernel rows), ``kernel_svm`` (scikit-learn, precomputed kernel).
"""

from dynamics.ntk.empirical import (asymmetric_sign_kernel, choose_method, empirical_ntk,
                                    flat_jacobian, sign_kernel)
from dynamics.ntk.infinite import NTKMLP, InfiniteWidthKernels, NTKDense, infinite_width_kernels
from dynamics.ntk.predict import MSEPrediction, gradient_descent_mse, linearize, linearized_apply
from dynamics.ntk.solvers import (
    KernelRegressionFit,
    LogisticFit,
    SVMFit,
    kernel_logistic_regression,
    kernel_regression,
    kernel_svm,
)

__all__ = [
    "InfiniteWidthKernels",
    "KernelRegressionFit",
    "LogisticFit",
    "MSEPrediction",
    "NTKDense",
    "NTKMLP",
    "SVMFit",
    "asymmetric_sign_kernel",
    "choose_method",
    "empirical_ntk",
    "flat_jacobian",
    "gradient_descent_mse",
    "infinite_width_kernels",
    "kernel_logistic_regression",
    "kernel_regression",
    "kernel_svm",
    "linearize",
    "linearized_apply",
    "sign_kernel",
]
