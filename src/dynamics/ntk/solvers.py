r"""Kernel solvers for the kernel view of fine-tuning: ridge least squares, logistic, SVM.

These mirror the solvers of ``princeton-nlp/LM-Kernel-FT`` (``src/kernel_solvers.py``): ``lstsq``
(kernel regression, optionally with a ridge), ``logistic`` (linear logistic regression on kernel
rows as features) and ``svc`` / ``svr`` on a precomputed kernel. The first two are pure JAX and
jit-compatible; the SVM calls scikit-learn on the host.

References:
  Malladi, Wettig, Yu, Chen, Arora, "A Kernel-Based View of Language Model Fine-Tuning", ICML 2023
  (https://arxiv.org/abs/2210.05643).
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu

from dynamics.ntk.predict import _as_2d, _flatten_kernel, _predict_test

_mm = functools.partial(jnp.matmul, precision=jax.lax.Precision.HIGHEST)
_RIDGE_SCALES = ("absolute", "trace", "spectral")


class KernelRegressionFit(NamedTuple):
    """Result of :func:`kernel_regression`.

    Attributes:
      alpha: dual coefficients, ``(N O, 1)`` for a 4-D kernel or ``(N, O)`` for a 2-D one.
      train: fitted outputs on the training inputs, shaped like ``y_train``.
      test: predictions on the test inputs, or ``None`` without ``k_test_train``.
    """

    alpha: jax.Array
    train: jax.Array
    test: jax.Array | None


def kernel_regression(k_train_train: jax.Array, y_train: jax.Array,
                      k_test_train: jax.Array | None = None, *, ridge: float | jax.Array = 0.0,
                      ridge_scale: str = "absolute", fx_train_0: float | jax.Array = 0.0,
                      fx_test_0: float | jax.Array = 0.0) -> KernelRegressionFit:
    r"""Kernel least squares with an optional ridge, around initial outputs :math:`f_0`.

    .. math::
      \alpha = \operatorname{lstsq}(K + \lambda_{\mathrm{eff}} I,\; y - f_0), \qquad
      \hat f_{\mathrm{test}} = f_{\mathrm{test},0} + K_{*} \alpha,

    where ``lstsq`` is the minimum-norm least-squares solution (SVD; ``numpy.linalg.lstsq``
    semantics, so a singular or asymmetric :math:`K`, e.g. an A-SignGD train kernel, is fine). The
    ridge is :math:`\lambda_{\mathrm{eff}} = \lambda` (``"absolute"``),
    :math:`\lambda\cdot\mathrm{mean}\,\mathrm{diag}\,K` (``"trace"``, neural-tangents'
    ``diag_reg``) or :math:`\lambda\cdot\sigma_{\max}(K)` (``"spectral"``, LM-Kernel-FT's
    ``--kernel_regularization``). With :math:`f_0` the initial
    outputs this is the linearized model trained to convergence on MSE; LM-Kernel-FT's
    ``--adjust_for_init --f0_scaling s`` is ``fx_train_0 = f0 / s``, ``fx_test_0 = f0_test / s``.

    Args:
      k_train_train: ``(N, N)`` (the same kernel for every output) or ``(N, N, O, O)``.
      y_train: targets ``(N, O)`` (e.g. one-hot, or ±1 for a binary ``f``) or ``(N,)``.
      k_test_train: ``(N_test, N)`` or ``(N_test, N, O, O)``, or ``None``.
      ridge: :math:`\lambda \ge 0`.
      ridge_scale: ``"absolute"``, ``"trace"`` or ``"spectral"``.
      fx_train_0: initial outputs on the training inputs, broadcast to ``y_train``.
      fx_test_0: initial outputs on the test inputs, broadcast to ``(N_test, O)``.

    Returns:
      A :class:`KernelRegressionFit` ``(alpha, train, test)``.
    """
    if ridge_scale not in _RIDGE_SCALES:
        raise ValueError(
            f"ridge_scale={ridge_scale!r} is unknown; valid: {', '.join(_RIDGE_SCALES)}")
    squeeze = y_train.ndim == 1
    y = _as_2d(y_train)
    num_out = y.shape[1]
    k, full = _flatten_kernel(k_train_train, num_out)
    dtype = jnp.result_type(k.dtype, y.dtype)
    k = k.astype(dtype)
    if ridge_scale == "trace":
        scale = jnp.mean(jnp.diag(k))
    elif ridge_scale == "spectral":
        scale = jnp.linalg.norm(k, 2)
    else:
        scale = jnp.ones((), dtype)
    k_reg = k + ridge * scale * jnp.eye(k.shape[0], dtype=dtype)
    f0 = jnp.broadcast_to(fx_train_0, y.shape).astype(dtype)
    r0 = (y - f0).reshape(-1, 1) if full else (y - f0)
    alpha = jnp.linalg.lstsq(k_reg, r0, rcond=None)[0]
    train = (f0.reshape(r0.shape) + _mm(k, alpha)).reshape(y.shape)
    test = None
    if k_test_train is not None:
        test = _predict_test(k_test_train, alpha, full, num_out, fx_test_0, dtype)
        test = test[:, 0] if squeeze else test
    return KernelRegressionFit(alpha=alpha, train=train[:, 0] if squeeze else train, test=test)


class LogisticFit(NamedTuple):
    """Result of :func:`kernel_logistic_regression`.

    Attributes:
      weight: ``(F, C)`` weights on the standardized kernel-row features (``F = N`` for a 2-D
        kernel).
      bias: ``(C,)`` intercepts.
      feature_mean: training mean of each feature (zeros without standardization).
      feature_scale: training standard deviation of each feature (ones without standardization).
      train_logits: ``(N, C)`` logits on the training inputs.
      test_logits: ``(N_test, C)`` logits, or ``None`` without ``k_test_train``.
      num_iter: L-BFGS iterations used.
      grad_norm: gradient norm of the objective at the solution.
    """

    weight: jax.Array
    bias: jax.Array
    feature_mean: jax.Array
    feature_scale: jax.Array
    train_logits: jax.Array
    test_logits: jax.Array | None
    num_iter: jax.Array
    grad_norm: jax.Array


def kernel_logistic_regression(k_train_train: jax.Array, labels: jax.Array,
                               k_test_train: jax.Array | None = None, *, num_classes: int,
                               l2: float | jax.Array = 1e-3, standardize: bool = True,
                               max_iter: int = 1000, tol: float = 1e-8) -> LogisticFit:
    r"""Multinomial logistic regression with kernel rows as features.

    The features are :math:`\phi(x) = K(x, X_{\mathrm{train}})`.

    Minimizes, by L-BFGS (``optax.lbfgs`` in a ``lax.while_loop``),

    .. math::
      \frac1N \sum_i -\log \operatorname{softmax}(W^\top \tilde\phi(x_i) + b)_{y_i}
      + \frac{\ell_2}{2} \|W\|_F^2,

    with :math:`\tilde\phi` the features standardized by their training mean and standard deviation
    (``standardize=True``) and the intercept unpenalized. This is LM-Kernel-FT's ``logistic`` solver
    (scikit-learn's ``LogisticRegression`` with ``C = 1 / (l2 N)``; the paper cross-validates
    ``C``);
    it is linear in kernel features, **not** kernel logistic regression (:math:`f = K\alpha` with an
    :math:`\alpha^\top K \alpha` penalty). A 4-D kernel ``(N, N, O, O)`` is flattened to ``N O²``
    features per example.

    Args:
      k_train_train: ``(N, N)`` or ``(N, N, O, O)`` kernel between training inputs.
      labels: integer class labels, ``(N,)``, in ``[0, num_classes)``.
      k_test_train: ``(N_test, N, ...)`` kernel between test and training inputs, or ``None``.
      num_classes: number of classes :math:`C` (static).
      l2: weight penalty :math:`\ell_2 > 0` (keeps the problem strictly convex on separable data).
      standardize: z-score the features with training statistics.
      max_iter: maximum L-BFGS iterations (static).
      tol: stop when the gradient norm falls below ``tol``.

    Returns:
      A :class:`LogisticFit`.
    """
    phi = jnp.reshape(k_train_train, (k_train_train.shape[0], -1))
    dtype = phi.dtype
    if standardize:
        mean = jnp.mean(phi, axis=0)
        scale = jnp.std(phi, axis=0)
        scale = jnp.where(scale > 0, scale, 1.0)
    else:
        mean = jnp.zeros(phi.shape[1], dtype)
        scale = jnp.ones(phi.shape[1], dtype)
    feats = (phi - mean) / scale
    onehot = jax.nn.one_hot(labels, num_classes, dtype=dtype)
    l2 = jnp.asarray(l2, dtype)

    def objective(params):
        w, b = params
        logits = _mm(feats, w) + b
        nll = -jnp.mean(jnp.sum(onehot * jax.nn.log_softmax(logits), axis=-1))
        return nll + 0.5 * l2 * jnp.sum(w**2)

    init = (jnp.zeros((feats.shape[1], num_classes), dtype), jnp.zeros((num_classes,), dtype))
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(objective)

    def step(carry):
        params, state = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = opt.update(grad, state, params, value=value, grad=grad,
                                    value_fn=objective)
        return optax.apply_updates(params, updates), state

    def keep_going(carry):
        _, state = carry
        count = otu.tree_get(state, "count")
        grad_norm = otu.tree_norm(otu.tree_get(state, "grad"))
        return (count == 0) | ((count < max_iter) & (grad_norm >= tol))

    (w, b), state = jax.lax.while_loop(keep_going, step, (init, opt.init(init)))
    grad_norm = otu.tree_norm(jax.grad(objective)((w, b)))
    train_logits = _mm(feats, w) + b
    test_logits = None
    if k_test_train is not None:
        phi_t = jnp.reshape(k_test_train, (k_test_train.shape[0], -1)).astype(dtype)
        test_logits = _mm((phi_t - mean) / scale, w) + b
    return LogisticFit(weight=w, bias=b, feature_mean=mean, feature_scale=scale,
                       train_logits=train_logits, test_logits=test_logits,
                       num_iter=otu.tree_get(state, "count"), grad_norm=grad_norm)


class SVMFit(NamedTuple):
    """Result of :func:`kernel_svm` (NumPy arrays).

    Attributes:
      train_decision: decision function (classification) or prediction (regression) on the
        training inputs.
      test_decision: the same on test inputs, or ``None``.
      test_pred: predicted labels (classification) or values (regression) on the test inputs,
        or ``None``.
      support: indices of the support vectors.
    """

    train_decision: np.ndarray
    test_decision: np.ndarray | None
    test_pred: np.ndarray | None
    support: np.ndarray


def kernel_svm(k_train_train, y_train, k_test_train=None, *, task: str = "classification",
               C: float = 1.0, epsilon: float = 0.1) -> SVMFit:  # noqa: N803
    r"""Support-vector classifier or regressor on a precomputed kernel (scikit-learn, on the host).

    ``task="classification"`` fits ``sklearn.svm.SVC(kernel="precomputed", C=C)``, the dual of
    :math:`\min_{w, b} \frac12\|w\|^2 + C\sum_i \max(0, 1 - y_i(\langle w, \phi(x_i)\rangle + b))`;
    ``task="regression"`` fits ``SVR(kernel="precomputed", C=C, epsilon=epsilon)``. LM-Kernel-FT's
    ``svc`` / ``svr`` solvers. The kernel must be a scalar kernel (``(N, N)``: a binary ``f`` or
    ``trace_axes=(-1,)``) and should be symmetric PSD: an A-SignGD kernel is not a valid SVM kernel.
    Not jit-compatible (scikit-learn runs on NumPy copies).

    Args:
      k_train_train: ``(N, N)`` kernel between training inputs.
      y_train: ``(N,)`` labels (classification) or targets (regression).
      k_test_train: ``(N_test, N)`` kernel between test and training inputs, or ``None``.
      task: ``"classification"`` or ``"regression"``.
      C: inverse regularization strength.
      epsilon: width of the insensitive tube (regression only).

    Returns:
      An :class:`SVMFit`.
    """
    try:
        from sklearn.svm import SVC, SVR
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("kernel_svm needs scikit-learn: pip install scikit-learn") from err
    k = np.asarray(k_train_train, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"k_train_train must be a square (N, N) kernel; got shape {k.shape}")
    y = np.asarray(y_train)
    if task == "classification":
        model = SVC(kernel="precomputed", C=C)
        decision = model.fit(k, y).decision_function
    elif task == "regression":
        model = SVR(kernel="precomputed", C=C, epsilon=epsilon)
        decision = model.fit(k, y).predict
    else:
        raise ValueError(f"task={task!r} is unknown; valid: classification, regression")
    test_decision = test_pred = None
    if k_test_train is not None:
        kt = np.asarray(k_test_train, dtype=np.float64)
        test_decision = decision(kt)
        test_pred = model.predict(kt)
    return SVMFit(train_decision=decision(k), test_decision=test_decision, test_pred=test_pred,
                  support=model.support_)
