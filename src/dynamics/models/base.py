"""The ``Model`` type, the model registry and shared initializers."""

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import linen as nn

from dynamics.registry import Registry

PyTree = object


class Model(NamedTuple):
    """A model as two pure functions.

    Attributes:
      init: ``init(key) -> params``.
      apply: ``apply(params, x) -> outputs`` with ``x`` of shape ``(N, *input_shape)`` and outputs
        ``(N, out_dim)``.
    """

    init: Callable[[jax.Array], PyTree]
    apply: Callable[[PyTree, jax.Array], jax.Array]


MODELS: Registry[Callable[..., Model]] = Registry("model", "model.name")

ACTIVATIONS: Registry[Callable[[jax.Array], jax.Array]] = Registry("activation", "model.activation")
for _name, _fn in {"tanh": jnp.tanh, "relu": jax.nn.relu, "gelu": jax.nn.gelu, "elu": jax.nn.elu,
                   "softplus": jax.nn.softplus, "sigmoid": jax.nn.sigmoid,
                   "identity": lambda x: x, "hardtanh": lambda x: jnp.clip(x, -1.0, 1.0)}.items():
    ACTIVATIONS.register(_name)(_fn)


def uniform_fan_in_bias(fan_in: int):
    """PyTorch's default bias initializer: U(−1/√fan_in, 1/√fan_in)."""
    bound = 1.0 / max(fan_in, 1) ** 0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


# Weight initializers by config name. "torch" is PyTorch's default for Linear/Conv (kaiming-uniform with
# a = √5, i.e. U(−1/√fan_in, 1/√fan_in)), which the EoS anchors use.
KERNEL_INITS: Registry[Callable] = Registry("initializer", "model.init")
KERNEL_INITS.register("torch")(nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"))
KERNEL_INITS.register("lecun")(nn.initializers.lecun_normal())
KERNEL_INITS.register("he")(nn.initializers.he_normal())
KERNEL_INITS.register("xavier")(nn.initializers.xavier_normal())


def bias_init(init_name: str, fan_in: int):
    return uniform_fan_in_bias(fan_in) if init_name == "torch" else nn.initializers.zeros


def build_model(name: str, input_shape: tuple[int, ...], out_dim: int, **options) -> Model:
    """Build a registered model for inputs of ``input_shape`` (without the batch axis)."""
    return MODELS.get(name)(tuple(input_shape), out_dim, **options)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _compiled_init(module: nn.Module, input_shape: tuple[int, ...], key: jax.Array) -> PyTree:
    """``module.init`` as one compiled program, cached per (module, input shape) across keys.

    Run op by op, an init compiles each initializer and layer operation on its own (dozens of
    programs, seconds, most of them the PRNG draws); here one program, the same numbers bit for bit
    (tests/test_models_fast_apply.py) since every draw is the same sequence of operations.
    """
    return module.init(key, jnp.zeros((1, *input_shape)))["params"]


def from_flax(module: nn.Module, input_shape: tuple[int, ...], *, compile_init: bool = True) -> Model:
    """Wrap a Flax module as a ``Model`` (params are the ``params`` collection).

    ``compile_init``: run ``init`` as one compiled program (the house models); False runs it eagerly
    (a user's module, which may not be hashable or traceable in ``init``).
    """

    def init(key):
        if compile_init:
            return _compiled_init(module, tuple(input_shape), key)
        return module.init(key, jnp.zeros((1, *input_shape)))["params"]

    def apply(params, x):
        return module.apply({"params": params}, x)

    return Model(init, apply)


def num_params(params: PyTree) -> int:
    """Number of scalar parameters in a pytree."""
    return sum(int(jnp.size(p)) for p in jax.tree.leaves(params))
