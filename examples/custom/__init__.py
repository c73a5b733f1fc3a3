"""Your own model, optimizer and data set, plugged into ``python -m dynamics.run`` by import path.

From the repository root (the current directory is on ``sys.path`` under ``python -m``)::

    python examples/custom/make_data.py /tmp/blobs.npz                       # your arrays as .npz
    python -m dynamics.run +exp=eos model.name=target model.target=examples.custom:linen_mlp \\
        model.kwargs.width=32 optimizer.name=target optimizer.target=examples.custom:clipped_sgd \\
        optimizer.kwargs.max_norm=10.0 data.name=npz data.path=/tmp/blobs.npz

Each model callable returns one of the three kinds ``model.name=target`` accepts; each receives
``model.kwargs`` plus ``out_dim`` / ``input_shape`` / ``rngs`` when its signature names them.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax import nnx


class _LinenMLP(nn.Module):
    width: int
    out_dim: int

    @nn.compact
    def __call__(self, x):
        x = x.reshape((x.shape[0], -1))
        return nn.Dense(self.out_dim)(jnp.tanh(nn.Dense(self.width)(x)))


def linen_mlp(out_dim: int, width: int = 32) -> nn.Module:
    """A Flax linen Module: tanh MLP ``d → width → out_dim``."""
    return _LinenMLP(width, out_dim)


class _NnxMLP(nnx.Module):
    def __init__(self, d_in: int, width: int, d_out: int, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(d_in, width, rngs=rngs)
        self.out = nnx.Linear(width, d_out, rngs=rngs)

    def __call__(self, x):
        return self.out(jnp.tanh(self.hidden(x.reshape((x.shape[0], -1)))))


def nnx_mlp(input_shape: tuple, out_dim: int, rngs: nnx.Rngs, width: int = 32) -> nnx.Module:
    """A flax.nnx Module (built anew from each run's init key through ``rngs``)."""
    return _NnxMLP(int(np.prod(input_shape)), width, out_dim, rngs=rngs)


def linear_pair(input_shape: tuple, out_dim: int, scale: float = 0.1):
    """An ``(init, apply)`` pair: a linear model with N(0, scale²) weights."""
    d = int(np.prod(input_shape))

    def init(key):
        return {"w": scale * jax.random.normal(key, (d, out_dim)), "b": jnp.zeros(out_dim)}

    def apply(params, x):
        return x.reshape((x.shape[0], -1)) @ params["w"] + params["b"]

    return init, apply


def clipped_sgd(learning_rate: float, max_norm: float = 1.0) -> optax.GradientTransformation:
    """An optax transformation of your own: SGD on gradients clipped to global norm ``max_norm``
    (both numbers traced by the trainer, so ``vmap`` can sweep them)."""
    return optax.chain(optax.clip_by_global_norm(max_norm), optax.sgd(learning_rate))


def blobs(n_train: int = 256, n_test: int = 128, dim: int = 8, classes: int = 3, seed: int = 0):
    """A small classification set as the four arrays ``data.name=npz`` reads."""
    rng = np.random.default_rng(seed)
    centers = 2.0 * rng.normal(size=(classes, dim))

    def draw(n):
        y = rng.integers(0, classes, n)
        return (centers[y] + rng.normal(size=(n, dim))).astype(np.float32), y.astype(np.int32)

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
