r"""The linearized model and the closed-form kernel gradient descent it follows on MSE.

Linearizing :math:`f` around :math:`\theta_0`,
:math:`f^{\mathrm{lin}}(\theta, x) = f(\theta_0, x) + J(x)(\theta - \theta_0)`, makes gradient
descent on a squared loss a linear ODE in function space driven by the empirical NTK
:math:`\Theta = J J^\top`, solved here in closed form (neural-tangents'
``predict.gradient_descent_mse``).

References:
  Lee et al., "Wide Neural Networks of Any Depth Evolve as Linear Models Under Gradient Descent",
  NeurIPS 2019 (https://arxiv.org/abs/1902.06720).
"""

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

PyTree = object
ApplyFn = Callable[[PyTree, PyTree], jax.Array]

_mm = functools.partial(jnp.matmul, precision=jax.lax.Precision.HIGHEST)


def linearized_apply(apply_fn: ApplyFn, params0: PyTree, params: PyTree, x: PyTree) -> jax.Array:
    r"""First-order Taylor model of ``apply_fn`` around ``params0``, evaluated at ``params``.

    .. math::
      f^{\mathrm{lin}}(\theta, x) = f(\theta_0, x)
        + \partial_\theta f(\theta_0, x)\,(\theta - \theta_0).

    One forward-mode pass (``jax.jvp``) evaluates both terms; nothing of size :math:`N \times P` is
    formed. Exact at :math:`\theta = \theta_0` and linear in :math:`\theta - \theta_0`.

    Args:
      apply_fn: ``apply_fn(params, x) -> (N, O)``.
      params0: the expansion point :math:`\theta_0`.
      params: the point :math:`\theta` (a pytree shaped like ``params0``).
      x: inputs.

    Returns:
      :math:`f^{\mathrm{lin}}(\theta, x)`, shaped like ``apply_fn(params0, x)``.
    """
    delta = jax.tree.map(lambda p, p0: p - p0, params, params0)
    f0, df = jax.jvp(lambda p: apply_fn(p, x), (params0,), (delta,))
    return f0 + df


def linearize(apply_fn: ApplyFn, params0: PyTree) -> ApplyFn:
    r"""The linearized model as a function ``f_lin(params, x)`` (neural-tangents' ``linearize``).

    .. math::
      f^{\mathrm{lin}}(\theta, x) = f(\theta_0, x) + J(\theta_0, x)(\theta - \theta_0).

    The returned function closes over ``params0``; inside a jitted training step prefer
    :func:`linearized_apply` with ``params0`` passed as an argument, so XLA does not constant-fold
    it.

    Args:
      apply_fn: ``apply_fn(params, x) -> (N, O)``.
      params0: the expansion point :math:`\theta_0`.

    Returns:
      ``f_lin(params, x)``, with the signature of ``apply_fn``.
    """

    def f_lin(params, x):
        return linearized_apply(apply_fn, params0, params, x)

    return f_lin


class MSEPrediction(NamedTuple):
    """Outputs of the linearized model after kernel gradient descent on MSE.

    Attributes:
      train: predictions on the training inputs, shaped like ``y_train``.
      test: predictions on the test inputs, shape ``(N_test, O)``, or ``None`` without a test
        kernel.
    """

    train: jax.Array
    test: jax.Array | None


def _flatten_kernel(k: jax.Array, num_out: int) -> tuple[jax.Array, bool]:
    """``(N1, N2, O, O) -> (N1 O, N2 O)``; a 2-D kernel (shared by all outputs) is kept as is."""
    if k.ndim == 4:
        if k.shape[2] != num_out or k.shape[3] != num_out:
            raise ValueError(f"kernel logit axes {k.shape[2:]} do not match O = {num_out}")
        n1, n2 = k.shape[:2]
        return jnp.transpose(k, (0, 2, 1, 3)).reshape(n1 * num_out, n2 * num_out), True
    if k.ndim == 2:
        return k, False
    raise ValueError(f"kernel must have shape (N1, N2) or (N1, N2, O, O); got {k.shape}")


def _predict_test(k_test_train, coef, full: bool, num_out: int, fx_test_0, dtype) -> jax.Array:
    """``f_test = f_test_0 + K_test,train · coef`` as ``(n_test, num_out)``; kernels must match in rank."""
    kt, full_t = _flatten_kernel(k_test_train, num_out)
    if full_t != full:
        raise ValueError("k_train_train and k_test_train must both be 2-D or both be 4-D")
    n_test = k_test_train.shape[0]
    ft0 = jnp.broadcast_to(fx_test_0, (n_test, num_out)).astype(dtype)
    return ft0 + _mm(kt.astype(dtype), coef).reshape(n_test, num_out)


def _as_2d(y: jax.Array) -> jax.Array:
    return y[:, None] if y.ndim == 1 else y


def gradient_descent_mse(k_train_train: jax.Array, y_train: jax.Array,
                         t: float | jax.Array | None = None, *,
                         k_test_train: jax.Array | None = None,
                         fx_train_0: float | jax.Array = 0.0, fx_test_0: float | jax.Array = 0.0,
                         learning_rate: float | jax.Array = 1.0, diag_reg: float | jax.Array = 0.0,
                         discrete: bool = False) -> MSEPrediction:
    r"""Closed-form outputs of the linearized model after gradient descent on MSE for time ``t``.

    The loss is :math:`L = \frac{1}{2n}\sum (f - y)^2` with :math:`n` = ``y_train.size`` (half the
    mean over all :math:`N \cdot O` entries; neural-tangents' convention). With :math:`\Theta` the
    train-train kernel flattened to :math:`(N O) \times (N O)` and :math:`\Theta_*` the test-train
    kernel, gradient flow for time :math:`t` at rate :math:`\eta` (:math:`\tau = \eta t`) gives

    .. math::
      f_{\mathrm{train}}(\tau) = y + e^{-\tau\Theta/n}(f_0 - y), \qquad
      f_{\mathrm{test}}(\tau) = f_{\mathrm{test},0}
        + \Theta_* \Theta^{-1}(I - e^{-\tau\Theta/n})(y - f_0).

    With ``discrete=True``, ``t`` counts full-batch GD steps of size :math:`\eta`, exactly:
    :math:`e^{-\tau\Theta/n}` becomes :math:`(I - \eta\Theta/n)^t`. ``t=None`` is the converged
    limit (kernel regression)
    :math:`f_{\mathrm{test}} = f_{\mathrm{test},0} + \Theta_*\Theta^{-1}(y - f_0)`
    (pseudo-inverse for a singular :math:`\Theta`, which is the limit of the flow from :math:`f_0`).
    Finite times use ``eigh`` with eigenvalues clamped at 0;
    :math:`\Theta^{-1}(I - e^{-\tau\Theta/n})` is evaluated per eigenvalue, with the limit
    :math:`\tau/n` at :math:`\lambda = 0`.

    Args:
      k_train_train: train-train kernel, ``(N, N)`` (shared by every output, e.g.
        ``trace_axes=(-1,)``) or ``(N, N, O, O)``; symmetric.
      y_train: targets, ``(N, O)`` (or ``(N,)`` for one output).
      t: training time (or number of steps with ``discrete=True``); ``None`` for :math:`t = \infty`.
        A scalar; ``jax.vmap`` over it for a trajectory.
      k_test_train: test-train kernel, ``(N_test, N)`` or ``(N_test, N, O, O)``, or ``None``.
      fx_train_0: initial outputs on the training inputs (``f(θ₀, X)``), broadcast to ``y_train``.
      fx_test_0: initial outputs on the test inputs, broadcast to ``(N_test, O)``.
      learning_rate: :math:`\eta`.
      diag_reg: adds ``diag_reg * mean(diag Θ) * I`` to :math:`\Theta` (neural-tangents' relative
        ridge); ``0`` for none.
      discrete: whether ``t`` counts discrete GD steps.

    Returns:
      An :class:`MSEPrediction` ``(train, test)``; ``test`` is ``None`` without ``k_test_train``.
    """
    squeeze = y_train.ndim == 1
    y = _as_2d(y_train)
    num_out = y.shape[1]
    n = y.size
    k, full = _flatten_kernel(k_train_train, num_out)
    dtype = jnp.result_type(k.dtype, y.dtype)
    k = k.astype(dtype)
    k = k + diag_reg * jnp.mean(jnp.diag(k)) * jnp.eye(k.shape[0], dtype=dtype)
    f0 = jnp.broadcast_to(fx_train_0, y.shape).astype(dtype)
    # Residual as a matrix whose rows index the flattened kernel: (N O, 1) or (N, O).
    r0 = (y - f0).reshape(-1, 1) if full else (y - f0)

    if t is None:
        coef = jnp.linalg.lstsq(k, r0, rcond=None)[0]  # Θ⁺ (y − f₀)
        fx_train = (f0.reshape(r0.shape) + _mm(k, coef)).reshape(y.shape)
    else:
        lam, vecs = jnp.linalg.eigh(k)
        lam = jnp.maximum(lam, 0.0)
        t = jnp.asarray(t, dtype)
        lr = jnp.asarray(learning_rate, dtype)
        h = lr * lam / n
        if discrete:
            stable = h < 1
            log_a = jnp.log1p(-jnp.where(stable, h, 0.0))
            power = (1 - h) ** t
            decay = jnp.where(stable, jnp.exp(t * log_a), power)
            one_minus = jnp.where(stable, -jnp.expm1(t * log_a), 1 - power)
        else:
            decay = jnp.exp(-t * h)
            one_minus = -jnp.expm1(-t * h)
        limit = t * lr / n
        positive = lam > 0
        g = jnp.where(positive, one_minus / jnp.where(positive, lam, 1.0), limit)  # Θ⁻¹(I − decay)
        proj = _mm(vecs.T, r0)
        coef = _mm(vecs, g[:, None] * proj)
        fx_train = (y.reshape(r0.shape) - _mm(vecs, decay[:, None] * proj)).reshape(y.shape)

    fx_test = None
    if k_test_train is not None:
        fx_test = _predict_test(k_test_train, coef, full, num_out, fx_test_0, dtype)
        if squeeze:
            fx_test = fx_test[:, 0]
    if squeeze:
        fx_train = fx_train[:, 0]
    return MSEPrediction(train=fx_train, test=fx_test)
