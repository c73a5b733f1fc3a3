"""Checkpoints of a training run: any pytree of arrays (PRNG keys included) plus JSON metadata.

One ``.npz`` file per checkpoint, written to a temporary name and renamed, so a run killed while saving
leaves the previous checkpoint intact. Restoring needs a template pytree of the same structure (the
freshly initialised state), which fixes the tree structure, dtypes and key types.

(orbax-checkpoint was considered: its asynchronous saves and multi-host machinery are not needed for
these small single-process states, and typed PRNG keys need the same unwrapping either way.)
"""

import json
import os
from pathlib import Path

import jax
import numpy as np

PyTree = object


def _is_key(leaf) -> bool:
    return hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def save_checkpoint(directory: str | Path, step: int, tree: PyTree, meta: dict, keep: int = 2) -> Path:
    """Write ``tree`` and ``meta`` as ``<directory>/ckpt_<step>.npz``; keep the newest ``keep``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    leaves = jax.tree.leaves(jax.device_get(tree))
    arrays = {f"leaf_{i}": np.asarray(jax.random.key_data(x) if _is_key(x) else x)
              for i, x in enumerate(leaves)}
    path = directory / f"ckpt_{step:09d}.npz"
    tmp = directory / f".tmp_{step:09d}.npz"
    with open(tmp, "wb") as fh:
        np.savez(fh, __meta__=np.frombuffer(json.dumps({**meta, "step": step}).encode(), np.uint8),
                 **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    for old in sorted(directory.glob("ckpt_*.npz"))[:-keep]:
        old.unlink()
    return path


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest complete checkpoint in ``directory``, or None."""
    found = sorted(Path(directory).glob("ckpt_*.npz"))
    return found[-1] if found else None


def restore_checkpoint(path: str | Path, template: PyTree) -> tuple[PyTree, dict]:
    """Load a checkpoint into the structure of ``template``; return ``(tree, meta)``."""
    with np.load(path) as data:
        meta = json.loads(bytes(data["__meta__"]).decode())
        leaves, treedef = jax.tree.flatten(template)
        restored = []
        for i, like in enumerate(leaves):
            value = data[f"leaf_{i}"]
            if _is_key(like):
                restored.append(jax.random.wrap_key_data(value, impl=jax.random.key_impl(like)))
            else:
                restored.append(jax.numpy.asarray(value, dtype=like.dtype))
    return jax.tree.unflatten(treedef, restored), meta
