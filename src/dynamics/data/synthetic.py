"""Synthetic data generated from the ``data`` RNG stream: no download, exactly reproducible.

- ``synthetic``: x ~ N(0, I_d); class labels are the arg-max of a fixed random tanh teacher network
  (d → teacher_width → num_classes), the EoS smoke-test setting of papers/eos.md §8.2.
- ``teacher``: regression targets y = teacher(x) + noise·N(0, 1) with the same kind of teacher.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from dynamics.data.base import DATASETS, Dataset, take_subset


def _inputs(key, n_train, n_test, dim):
    return jax.random.normal(key, (n_train + n_test, dim))


# Each generator runs as one compiled program: run op by op, the PRNG draws, products and arg-max
# compile a program each (seconds before the first step). An optimization barrier after each of
# those operations keeps XLA's rewrites from crossing them (without, the teacher's weights differ in
# the last bit), so the numbers are bit for bit those of the operations run one by one
# (tests/test_compiled_builders.py, float32 and float64).
_op = jax.lax.optimization_barrier


def _teacher(key, x, width: int, out_dim: int, op=lambda a: a):
    """A random tanh network d → width → out_dim, or a random linear map when ``width == 0``;
    ``op`` wraps each operation (``_op`` inside the compiled generators, nothing when run eagerly)."""
    k1, k2 = jax.random.split(key)
    d = x.shape[-1]
    if width == 0:
        return op(x @ op(op(jax.random.normal(k1, (d, out_dim))) / np.sqrt(d)))
    w1 = op(op(jax.random.normal(k1, (d, width))) / np.sqrt(d))
    w2 = op(op(jax.random.normal(k2, (width, out_dim))) / np.sqrt(width))
    return op(op(jnp.tanh(op(x @ w1))) @ w2)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5))
def _classification(key, n_train, n_test, dim, num_classes, teacher_width):
    k_x, k_t = jax.random.split(key)
    x = _op(_inputs(k_x, n_train, n_test, dim))
    return x, jnp.argmax(_teacher(k_t, x, teacher_width, num_classes, _op), axis=-1)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5))
def _regression(key, n_train, n_test, dim, out_dim, teacher_width):
    """Inputs, teacher outputs and the unit label noise (scaled and added by the caller, op by op:
    in one program XLA contracts ``y + noise * z`` into a fused multiply-add)."""
    k_x, k_t, k_n = jax.random.split(key, 3)
    x = _op(_inputs(k_x, n_train, n_test, dim))
    y = _teacher(k_t, x, teacher_width, out_dim, _op)
    return x, y, jax.random.normal(k_n, y.shape)


@DATASETS.register("synthetic")
def synthetic(key, *, dtype=jnp.float32, n_train=1000, n_test=1000, dim=32, num_classes=4,
              teacher_width=64, **_) -> Dataset:
    """``num_classes``-way classification with labels from a random teacher."""
    n_train = 1000 if n_train is None else n_train
    n_test = 1000 if n_test is None else n_test
    x, y = _classification(key, n_train, n_test, dim, num_classes, teacher_width)
    x, y = np.asarray(x), np.asarray(y)
    return take_subset("synthetic", x[:n_train], y[:n_train], x[n_train:], y[n_train:],
                       num_classes, n_train, n_test, dtype)


@DATASETS.register("teacher")
def teacher(key, *, dtype=jnp.float32, n_train=1000, n_test=1000, dim=32, out_dim=1,
            teacher_width=64, noise=0.0, **_) -> Dataset:
    """Regression on a random tanh teacher, with optional Gaussian label noise."""
    n_train = 1000 if n_train is None else n_train
    n_test = 1000 if n_test is None else n_test
    x, y, z = _regression(key, n_train, n_test, dim, out_dim, teacher_width)
    y = y + noise * z
    x, y = np.asarray(x), np.asarray(y)
    return take_subset("teacher", x[:n_train], y[:n_train], x[n_train:], y[n_train:], 0,
                       n_train, n_test, dtype)
