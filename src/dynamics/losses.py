r"""Losses ``loss(outputs, targets) -> scalar``, averaged over examples.

Conventions (as in Cohen et al. 2021, locuslab/edge-of-stability):

- ``mse``: :math:`L = \frac{1}{n}\sum_i \tfrac12 \|f(x_i) - y_i\|^2`, the squared error summed over
  outputs, halved, and averaged over examples. Integer class labels are one-hot encoded first.
  (Some papers drop the ½; that doubles the Hessian, while the GD stability threshold stays 2/η.)
- ``sqrt_mse``: √L of the above (its minimum is 0 on interpolating models).
- ``cross_entropy``: mean softmax cross-entropy over examples, on integer labels.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from dynamics.registry import Registry

Loss = Callable[[jax.Array, jax.Array], jax.Array]

LOSSES: Registry[Loss] = Registry("loss", "train.loss")


def _as_targets(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    if jnp.issubdtype(targets.dtype, jnp.integer):
        return jax.nn.one_hot(targets, outputs.shape[-1], dtype=outputs.dtype)
    return targets.reshape(outputs.shape).astype(outputs.dtype)


@LOSSES.register("mse")
def mse(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """½‖f − y‖² summed over outputs, averaged over examples."""
    diff = outputs - _as_targets(outputs, targets)
    return 0.5 * jnp.mean(jnp.sum(diff.reshape(diff.shape[0], -1) ** 2, axis=-1))


@LOSSES.register("sqrt_mse")
def sqrt_mse(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """√L with L the ``mse`` above (GD on √L enters the edge of stability: Arora, Li, Panigrahi 2022)."""
    return jnp.sqrt(mse(outputs, targets))


@LOSSES.register("cross_entropy")
def cross_entropy(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy on integer labels."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(outputs, targets))


def accuracy(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Fraction of examples whose arg-max output is the label (classification only)."""
    return jnp.mean(jnp.argmax(outputs, axis=-1) == targets)
