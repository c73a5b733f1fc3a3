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


class CheckpointError(ValueError):
    """A checkpoint file is unreadable or does not fit the run's state (the message names the file)."""


def restore_checkpoint(path: str | Path, template: PyTree) -> tuple[PyTree, dict]:
    """Load a checkpoint into the structure of ``template``; return ``(tree, meta)``.

    Verifies it first: every array is read in full (the zip's CRC-32 checks catch truncation and
    flipped bits), the number of leaves and each leaf's shape must match ``template``. Raises
    ``CheckpointError`` naming the file otherwise.
    """
    leaves, treedef = jax.tree.flatten(template)
    try:
        with open(path, "rb") as fh, np.load(fh) as data:  # own the handle: closed on a bad zip too
            meta = json.loads(bytes(data["__meta__"]).decode())
            names = {n for n in data.files if n.startswith("leaf_")}
            if len(names) != len(leaves):
                raise CheckpointError(f"{len(names)} arrays, the run's state has {len(leaves)}")
            restored = []
            for i, like in enumerate(leaves):
                value = data[f"leaf_{i}"]
                want = jax.random.key_data(like).shape if _is_key(like) else np.shape(like)
                if value.shape != want:
                    raise CheckpointError(f"leaf {i} has shape {value.shape}, expected {want}")
                if _is_key(like):
                    restored.append(jax.random.wrap_key_data(value, impl=jax.random.key_impl(like)))
                else:
                    restored.append(jax.numpy.asarray(value, dtype=like.dtype))
    except CheckpointError as err:
        raise CheckpointError(f"checkpoint {path} does not fit this run: {err}") from None
    except Exception as err:  # BadZipFile, zlib/CRC errors, EOFError, KeyError, JSON errors, …
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(err).__name__}: {err})") from None
    return jax.tree.unflatten(treedef, restored), meta


def restore_latest(directory: str | Path, template: PyTree,
                   on_skip=None) -> tuple[PyTree, dict, Path] | None:
    """Restore the newest checkpoint in ``directory`` that verifies, falling back to older ones.

    ``on_skip(path, error)`` is called for each corrupt file skipped. Returns ``(tree, meta, path)``, or
    None when no checkpoint exists or none verifies.
    """
    for path in sorted(Path(directory).glob("ckpt_*.npz"), reverse=True):
        try:
            tree, meta = restore_checkpoint(path, template)
        except CheckpointError as err:
            if on_skip is not None:
                on_skip(path, err)
            continue
        return tree, meta, path
    return None
