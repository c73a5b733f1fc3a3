"""The ``Dataset`` type and the data-set registry."""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dynamics.errors import ConfigError
from dynamics.registry import Registry


class Dataset(NamedTuple):
    """In-memory arrays plus what a model needs to know about them.

    ``y_*`` are integer labels for classification (``num_classes > 0``) and float targets of shape
    ``(N, out_dim)`` for regression (``num_classes == 0``).
    """

    x_train: jax.Array
    y_train: jax.Array
    x_test: jax.Array
    y_test: jax.Array
    num_classes: int
    name: str

    @property
    def out_dim(self) -> int:
        return self.num_classes if self.num_classes else int(self.y_train.shape[-1])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])


BATCH_SAMPLERS: Registry[Callable[..., jax.Array]] = Registry("batch sampler", "train.sampling")


@BATCH_SAMPLERS.register("without_replacement")
def sample_batch(key: jax.Array, step: jax.Array, n: int, batch_size: int) -> jax.Array:
    """Indices of the minibatch for ``step``: a pure function of ``(key, step)``, without replacement.

    Costs a permutation of all ``n`` indices per step (about 23 ms at n = 50,000 on a CPU core).
    """
    return jax.random.choice(jax.random.fold_in(key, step), n, (batch_size,), replace=False)


@BATCH_SAMPLERS.register("with_replacement")
def sample_batch_with_replacement(key: jax.Array, step: jax.Array, n: int,
                                  batch_size: int) -> jax.Array:
    """Indices drawn i.i.d. uniformly (with replacement): O(batch_size) per step, for large ``n``.

    Every example of the batch is an independent uniform draw, the sampling model of the SDE
    approximations (papers/sde.md); for ``batch_size`` ≪ ``n`` it differs from sampling without
    replacement only by repeats within a batch (probability ≈ B²/2n).
    """
    return jax.random.randint(jax.random.fold_in(key, step), (batch_size,), 0, n)


DATASETS: Registry[Callable[..., Dataset]] = Registry("data set", "data.name")


def take_subset(name: str, x_train, y_train, x_test, y_test, num_classes: int, n_train: int | None,
                n_test: int | None, dtype) -> Dataset:
    """The first ``n_train`` / ``n_test`` examples (deterministic), as JAX arrays of ``dtype``."""
    for key, want, have in (("data.n_train", n_train, len(x_train)),
                            ("data.n_test", n_test, len(x_test))):
        if want is not None and not 0 < want <= have:
            raise ConfigError(f"{key}={want} is invalid: allowed 1..{have} for data set {name!r}")
    n_train = len(x_train) if n_train is None else n_train
    n_test = len(x_test) if n_test is None else n_test
    y_dtype = np.int32 if num_classes else dtype
    return Dataset(jnp.asarray(x_train[:n_train], dtype), jnp.asarray(y_train[:n_train], y_dtype),
                   jnp.asarray(x_test[:n_test], dtype), jnp.asarray(y_test[:n_test], y_dtype),
                   num_classes, name)


def build_dataset(name: str, key: jax.Array, *, dtype=jnp.float32, **options) -> Dataset:
    """Build a registered data set. ``key`` is the ``data`` RNG stream."""
    return DATASETS.get(name)(key, dtype=dtype, **options)
