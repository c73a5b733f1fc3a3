"""Gradient oracles: how one training step turns (params, data, key, step) into a loss and a gradient.

An oracle is built from the objective and its options and returns
``oracle(params, x, y, key, step) -> (loss, outputs, targets_used, grads)``; it decides which examples
and which targets the step sees. Method-specific gradient estimates (minibatches, label noise, SVAG's
two-batch combination) live here, not as branches in the trainer.

Keys: each oracle draws from ``fold_in(key, step)`` (the minibatch) and from
``fold_in(fold_in(key, 1 + i), step)`` for its other randomness, so runs are pure functions of the seed.
"""

from collections.abc import Callable

import jax

from dynamics.data.base import BATCH_SAMPLERS
from dynamics.registry import Registry
from dynamics.svag import svag_weights

Oracle = Callable[..., tuple]
ORACLES: Registry[Callable[..., Oracle]] = Registry("gradient oracle", "oracle.name")


def _batch(x, y, key, step, batch_size, sampling="without_replacement"):
    if batch_size is None:
        return x, y
    idx = BATCH_SAMPLERS.get(sampling)(key, step, x.shape[0], batch_size)
    return x[idx], y[idx]


@ORACLES.register("batch")
def batch_oracle(objective: Callable, *, batch_size: int | None,
                 sampling: str = "without_replacement", **_) -> Oracle:
    """The gradient of the objective on the step's batch (all examples when ``batch_size`` is None)."""

    def oracle(params, x, y, key, step):
        xb, yb = _batch(x, y, key, step, batch_size, sampling)
        (value, outputs), grads = jax.value_and_grad(objective, has_aux=True)(params, xb, yb)
        return value, outputs, yb, grads

    return oracle


@ORACLES.register("label_noise")
def label_noise_oracle(objective: Callable, *, batch_size: int | None, label_noise_std: float,
                       num_classes: int = 0, sampling: str = "without_replacement", **_) -> Oracle:
    r"""Label-noise SGD (Blanc et al. 2020; Li, Wang, Arora 2022): fresh Gaussian noise on the targets.

    Each step replaces the batch's regression targets :math:`y` by :math:`y + \sigma\xi` with
    :math:`\xi \sim N(0, I)` drawn anew (class labels are one-hot encoded first), then takes the gradient
    of the objective. The logged loss is the loss on the noisy targets.
    """

    def oracle(params, x, y, key, step):
        xb, labels = _batch(x, y, key, step, batch_size, sampling)
        clean = jax.nn.one_hot(labels, num_classes, dtype=xb.dtype) if num_classes else labels
        noise_key = jax.random.fold_in(jax.random.fold_in(key, 1), step)
        noisy = clean + label_noise_std * jax.random.normal(noise_key, clean.shape, clean.dtype)
        (value, outputs), grads = jax.value_and_grad(objective, has_aux=True)(params, xb, noisy)
        return value, outputs, labels, grads

    return oracle


@ORACLES.register("svag")
def svag_oracle(objective: Callable, *, batch_size: int | None, svag_l: float, adaptive: bool,
                sampling: str = "without_replacement", **_) -> Oracle:
    r"""SVAG (Li, Malladi, Arora 2021): :math:`g = r_1 g(B_1) + r_2 g(B_2)` on two independent batches.

    :math:`r_{1,2} = (1 \pm \sqrt{2\ell - 1})/2` for SGD and :math:`(1 \pm \sqrt{2\ell^2 - 1})/2` for
    adaptive methods (``adaptive``): the mean gradient is unchanged and the noise covariance is
    multiplied by :math:`\ell` (resp. :math:`\ell^2`). The step size and betas are rescaled by the task
    (``dynamics.svag.svag_hyperparams``). The logged loss is the plain mean of the two batch losses.
    """
    if batch_size is None:
        from dynamics.errors import ConfigError

        raise ConfigError("train.batch_size=None is invalid with oracle.name=svag: allowed an integer "
                          "> 0 (SVAG amplifies minibatch noise)")
    r1, r2 = svag_weights(svag_l, adaptive=adaptive)

    def combined(params, x1, y1, x2, y2):
        v1, out1 = objective(params, x1, y1)
        v2, out2 = objective(params, x2, y2)
        return r1 * v1 + r2 * v2, (0.5 * (v1 + v2), out1)

    def oracle(params, x, y, key, step):
        x1, y1 = _batch(x, y, key, 2 * step, batch_size, sampling)
        x2, y2 = _batch(x, y, key, 2 * step + 1, batch_size, sampling)
        (_, (value, outputs)), grads = jax.value_and_grad(combined, has_aux=True)(
            params, x1, y1, x2, y2)
        return value, outputs, y1, grads

    return oracle


def build_oracle(name: str, objective: Callable, **options) -> Oracle:
    """Build a registered gradient oracle for ``objective(params, x, y) -> (loss, outputs)``."""
    return ORACLES.get(name)(objective, **options)


__all__ = ["ORACLES", "build_oracle"]
