"""mnist1d (Greydanus 2020): 10-class 1-D signals of length 40, generated procedurally.

The data set is built locally with ``mnist1d.data.make_dataset`` and its canonical arguments (seed 42:
4,000 training and 1,000 test examples); nothing is downloaded. Generation takes ~3 s, so the arrays are
cached in memory per process. ``data.n_train`` takes the first examples; ``data.classes`` keeps a subset of
classes (relabelled 0..k−1), as used for source/target tasks.
"""

import functools

import jax.numpy as jnp
import numpy as np

from dynamics.data.base import DATASETS, Dataset, take_subset
from dynamics.errors import ConfigError


@functools.lru_cache(maxsize=2)
def _generate(seed: int):
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = seed
    state = np.random.get_state()  # make_dataset reseeds numpy's global RNG; leave it as it was
    try:
        d = make_dataset(args)
    finally:
        np.random.set_state(state)
    return (d["x"].astype(np.float32), d["y"].astype(np.int32),
            d["x_test"].astype(np.float32), d["y_test"].astype(np.int32))


@DATASETS.register("mnist1d")
def mnist1d(key, *, dtype=jnp.float32, n_train=None, n_test=None, classes=None, mnist1d_seed=42,
            **_) -> Dataset:
    del key  # the canonical data set is fixed by its own seed
    x, y, xt, yt = _generate(int(mnist1d_seed))
    num_classes = 10
    if classes:
        classes = list(classes)
        bad = [c for c in classes if not 0 <= c < 10]
        if bad:
            raise ConfigError(f"data.classes={classes} is invalid: allowed class ids 0..9")
        remap = np.full(10, -1, np.int32)
        remap[classes] = np.arange(len(classes))
        keep, keep_t = np.isin(y, classes), np.isin(yt, classes)
        x, y, xt, yt = x[keep], remap[y[keep]], xt[keep_t], remap[yt[keep_t]]
        num_classes = len(classes)
    return take_subset("mnist1d", x, y, xt, yt, num_classes, n_train, n_test, dtype)
