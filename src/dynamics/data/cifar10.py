"""CIFAR-10 from a local copy (never downloaded at run time).

``data.path`` must point at the extracted python version of the data set, the folder
``cifar-10-batches-py`` holding ``data_batch_1`` … ``data_batch_5`` and ``test_batch``. Preprocessing
follows locuslab/edge-of-stability: scale to [0, 1], then standardise each pixel-feature by the training
mean and std; images are NHWC. ``data.n_train`` takes the first examples (no shuffling), as there.
"""

import pickle
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from dynamics.data.base import DATASETS, Dataset, take_subset
from dynamics.errors import ConfigError

FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def _read_batch(path: Path):
    with open(path, "rb") as fh:
        d = pickle.load(fh, encoding="bytes")
    x = np.asarray(d[b"data"], np.float32).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1) / 255.0
    return x, np.asarray(d[b"labels"], np.int32)


@DATASETS.register("cifar10")
def cifar10(key, *, dtype=jnp.float32, path=None, n_train=None, n_test=None, **_) -> Dataset:
    del key
    root = Path(path).expanduser() if path else None
    missing = [] if root is None else [f for f in FILES if not (root / f).exists()]
    if root is None or missing:
        raise ConfigError(
            f"data.path={path!r} is invalid: allowed a folder holding the python CIFAR-10 batches "
            f"({', '.join(FILES)}); download cifar-10-python.tar.gz from "
            "https://www.cs.toronto.edu/~kriz/cifar.html, extract it, and pass "
            "data.path=/path/to/cifar-10-batches-py"
        )
    parts = [_read_batch(root / f) for f in FILES[:5]]
    x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    xt, yt = _read_batch(root / FILES[5])
    mean, std = x.mean(axis=0), x.std(axis=0)
    x, xt = (x - mean) / std, (xt - mean) / std
    return take_subset("cifar10", x, y, xt, yt, 10, n_train, n_test, dtype)
