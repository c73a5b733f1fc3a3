"""The MLP's Flax-free apply is the same program as the Flax module's apply: identical jaxprs (so
identical compiled arithmetic and outputs) for widths, activations, biases, dtypes and input ranks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynamics.models import build_model
from dynamics.models.mlp import MLP


def flax_apply(options, out_dim):
    module = MLP(tuple(options.get("widths", (64, 64))), out_dim, options.get("activation", "tanh"),
                 options.get("init", "torch"), options.get("use_bias", True))
    return lambda params, x: module.apply({"params": params}, x)


@pytest.mark.parametrize("input_shape,options", [
    ((32,), dict(widths=[200, 200], activation="tanh")),
    ((3, 4, 4), dict(widths=[16], activation="relu", init="he")),
    ((5,), dict(widths=[8, 8, 8], activation="gelu", use_bias=False)),
    ((5,), dict(widths=[], activation="tanh")),
])
def test_same_jaxpr_and_outputs_as_flax(input_shape, options):
    model = build_model("mlp", input_shape, 3, **options)
    params = model.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (7, *input_shape))
    reference = flax_apply(options, 3)
    assert str(jax.make_jaxpr(model.apply)(params, x)) == str(jax.make_jaxpr(reference)(params, x))
    np.testing.assert_array_equal(np.asarray(model.apply(params, x)),
                                  np.asarray(reference(params, x)))
    # a loss through both, differentiated: the same program too
    def loss(apply):
        return lambda p: jnp.sum(apply(p, x) ** 2)
    assert (str(jax.make_jaxpr(jax.grad(loss(model.apply)))(params))
            == str(jax.make_jaxpr(jax.grad(loss(reference)))(params)))


def test_dtype_promotion_matches_flax(x64):
    model = build_model("mlp", (4,), 2, widths=[6])
    params = model.init(jax.random.key(0))  # float32 parameters
    x = jax.random.normal(jax.random.key(1), (3, 4), jnp.float64)  # float64 inputs
    reference = flax_apply(dict(widths=[6]), 2)
    assert str(jax.make_jaxpr(model.apply)(params, x)) == str(jax.make_jaxpr(reference)(params, x))
    assert model.apply(params, x).dtype == reference(params, x).dtype == jnp.float64


def test_wrong_parameter_shape_is_an_error():
    model = build_model("mlp", (4,), 2, widths=[6])
    params = model.init(jax.random.key(0))
    params["dense_1"]["kernel"] = jnp.zeros((6, 5))
    with pytest.raises(ValueError, match="dense_1/kernel"):
        model.apply(params, jnp.ones((3, 4)))
