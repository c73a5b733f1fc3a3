"""Data generation and model init run as one compiled program each; the numbers are bit for bit those
of the same operations run eagerly, op by op (the oracle: the code as it was before, JAX's own
PRNG programs included), in float32 and float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynamics.data import build_dataset
from dynamics.data.synthetic import _teacher as eager_teacher  # run op by op: the oracle
from dynamics.models import build_model
from dynamics.models.cnn import CNN
from dynamics.models.mlp import MLP
from dynamics.models.scale_invariant import ScaleInvariantMLP


@pytest.fixture(params=["float32", "float64"])
def precision(request):
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", request.param == "float64")
    yield request.param
    jax.config.update("jax_enable_x64", previous)


def same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("options", [dict(), dict(dim=8, num_classes=3, teacher_width=0,
                                                  n_train=50, n_test=20)])
def test_synthetic_matches_eager_generation(options, precision):
    key = jax.random.key(3)
    k_x, k_t = jax.random.split(key)
    dim, n = options.get("dim", 32), options.get("n_train", 1000) + options.get("n_test", 1000)
    x = jax.random.normal(k_x, (n, dim))
    teacher = eager_teacher(k_t, x, options.get("teacher_width", 64), options.get("num_classes", 4))
    y = jnp.argmax(teacher, axis=-1)
    data = build_dataset("synthetic", key, dtype=x.dtype, **options)
    n_train = options.get("n_train", 1000)
    assert same(data.x_train, x[:n_train]) and same(data.x_test, x[n_train:])
    assert same(data.y_train, np.asarray(y[:n_train], np.int32))


def test_teacher_regression_matches_eager_generation(precision):
    key, options = jax.random.key(4), dict(dim=6, out_dim=2, teacher_width=16, noise=0.3,
                                           n_train=40, n_test=10)
    k_x, k_t, k_n = jax.random.split(key, 3)
    x = jax.random.normal(k_x, (50, 6))
    y = eager_teacher(k_t, x, 16, 2)
    y = y + 0.3 * jax.random.normal(k_n, y.shape)
    data = build_dataset("teacher", key, dtype=x.dtype, **options)
    assert same(data.x_train, x[:40]) and same(data.y_train, y[:40]) and same(data.y_test, y[40:])


MODELS = [  # (case, in make test with float64 too)
    (("mlp", (32,), dict(widths=[64, 64]), MLP((64, 64), 4, "tanh", "torch", True)), False),
    (("mlp", (5,), dict(widths=[8], activation="relu", init="he"), MLP((8,), 4, "relu", "he", True)),
     True),
    (("mlp", (5,), dict(widths=[8], init="lecun"), MLP((8,), 4, "tanh", "lecun", True)), False),
    (("mlp", (5,), dict(widths=[8], init="xavier", use_bias=False),
      MLP((8,), 4, "tanh", "xavier", False)), False),
    (("cnn", (6, 6, 2), dict(channels=[3], init="he"), CNN((3,), 4, weight_init="he")), True),
    (("cnn", (12, 1), dict(channels=[4, 4]), CNN((4, 4), 4)), False),
    (("scale_invariant_mlp", (6,), dict(widths=[8]), ScaleInvariantMLP((8,), 4)), True),
]


# Every case in float32; in float64 one case per model kind in make test, the others under make
# test-all (each eager Flax init compiles op by op: the float64 copies were a sixth of this file's cold
# time, and the float64 path of each kind stays covered).
@pytest.mark.parametrize("precision,name,input_shape,options,module", [
    pytest.param(precision, *case, marks=() if precision == "float32" or fast else pytest.mark.slow)
    for precision in ("float32", "float64") for case, fast in MODELS], indirect=["precision"])
def test_model_init_matches_eager_flax_init(name, input_shape, options, module, precision):
    key = jax.random.key(5)
    params = build_model(name, input_shape, 4, **options).init(key)
    reference = module.init(key, jnp.zeros((1, *input_shape)))["params"]
    assert jax.tree.structure(params) == jax.tree.structure(reference)
    assert all(same(a, b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(reference)))
