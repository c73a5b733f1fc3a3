"""Fully connected network: Dense → activation, repeated, then a linear read-out.

``init`` is Flax's (the ``MLP`` module below); ``apply`` is the same computation written directly on
the parameter dict: it traces to the identical jaxpr (tests/test_models_fast_apply.py) in about a
fifth of the time, since Flax re-derives every parameter's shape from its initializer (an
``eval_shape``) on each apply. Code that traces the loss often (a ``Tracker`` measurement, a probe's
self-compiling entry point) pays that trace on every call.
"""

from collections.abc import Sequence

import jax.numpy as jnp
from flax import linen as nn
from flax.linen.dtypes import promote_dtype
from jax import lax

from dynamics.models.base import ACTIVATIONS, KERNEL_INITS, MODELS, Model, bias_init, from_flax


class MLP(nn.Module):
    widths: Sequence[int]
    out_dim: int
    activation: str = "tanh"
    weight_init: str = "torch"
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        act = ACTIVATIONS.get(self.activation)
        h = x.reshape(x.shape[0], -1)
        for i, width in enumerate([*self.widths, self.out_dim]):
            h = nn.Dense(width, use_bias=self.use_bias, kernel_init=KERNEL_INITS.get(self.weight_init),
                         bias_init=bias_init(self.weight_init, h.shape[-1]), name=f"dense_{i}")(h)
            if i < len(self.widths):
                h = act(h)
        return h


def _dense(h, layer: dict, name: str, width: int, use_bias: bool):
    """``nn.Dense.__call__`` on given parameters (same dtype promotion, contraction and bias add)."""
    kernel = layer["kernel"]
    bias = layer["bias"] if use_bias else None
    expected = {"kernel": (h.shape[-1], width), "bias": (width,)}
    for key, value in (("kernel", kernel), ("bias", bias)):
        if value is not None and tuple(jnp.shape(value)) != expected[key]:
            raise ValueError(f"MLP parameter {name}/{key} has shape {tuple(jnp.shape(value))}, "
                             f"the model expects {expected[key]}")
    h, kernel, bias = promote_dtype(h, kernel, bias)
    y = lax.dot_general(h, kernel, (((h.ndim - 1,), (0,)), ((), ())))
    if bias is not None:
        y += jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))
    return y


def mlp_apply(widths: Sequence[int], out_dim: int, activation: str = "tanh",
              use_bias: bool = True):
    """``apply(params, x)`` of :class:`MLP` without Flax (identical jaxpr, cheaper to trace)."""
    act = ACTIVATIONS.get(activation)
    sizes = [*widths, out_dim]

    def apply(params, x):
        h = x.reshape(x.shape[0], -1)
        for i, width in enumerate(sizes):
            name = f"dense_{i}"
            h = _dense(h, params[name], name, width, use_bias)
            if i < len(widths):
                h = act(h)
        return h

    return apply


@MODELS.register("mlp")
def mlp(input_shape, out_dim, *, widths=(64, 64), activation="tanh", init="torch",
        use_bias=True, **_) -> Model:
    """MLP ``prod(input_shape) → widths… → out_dim`` (inputs are flattened)."""
    ACTIVATIONS.get(activation), KERNEL_INITS.get(init)  # fail early on bad names
    module = MLP(tuple(widths), out_dim, activation, init, use_bias)
    return Model(from_flax(module, input_shape).init,
                 mlp_apply(tuple(widths), out_dim, activation, use_bias))
