"""Training state and the named RNG streams derived from one seed."""

from typing import NamedTuple

import jax

PyTree = object

# Each stream is fold_in(key(seed), index): adding a stream never changes the others.
STREAMS = {"data": 0, "init": 1, "noise": 2, "probe": 3}


def rng_streams(seed: int) -> dict[str, jax.Array]:
    """Named PRNG keys (``data``, ``init``, ``noise``, ``probe``) derived from one top-level seed."""
    root = jax.random.key(seed)
    return {name: jax.random.fold_in(root, index) for name, index in STREAMS.items()}


class TrainState(NamedTuple):
    """Everything that changes during training (a pytree).

    ``key`` is the ``noise`` stream: minibatch sampling for step t uses ``fold_in(key, t)``, so a run is
    a pure function of the seed.
    """

    step: jax.Array
    params: PyTree
    opt_state: PyTree
    key: jax.Array
