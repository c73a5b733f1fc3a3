"""Data parallelism with ``jax.sharding``: a 1-D mesh over the devices, batch sharded, params replicated.

The jitted training chunk and the probes are unchanged: XLA's SPMD partitioner splits every computation
over the example axis and inserts the all-reduce of the gradient (and of each Hessian-vector product).
On CPU, test it with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``. Across hosts, call
``jax.distributed.initialize()`` first (see the README); ``jax.devices()`` then lists every host's
devices and the same mesh spans them.
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dynamics.errors import check


def data_mesh() -> Mesh:
    """A mesh named ``data`` over all devices."""
    return Mesh(np.asarray(jax.devices()), ("data",))


def shard_batch(mesh: Mesh, tree, key: str = "data.n_train"):
    """Place arrays with their leading (example) axis split over the mesh."""
    n = len(mesh.devices.flat)
    for leaf in jax.tree.leaves(tree):
        check(leaf.shape[0] % n == 0, key, leaf.shape[0], f"a multiple of the {n} devices")
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec("data")))


def replicate(mesh: Mesh, tree):
    """Place a pytree (params, optimizer state, keys) whole on every device."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))
