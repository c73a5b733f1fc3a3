"""Data sets from files and from installed packages: ``npz`` (your arrays) and ``digits`` (scikit-learn's
8×8 handwritten digits, shipped inside scikit-learn: no download)."""

from pathlib import Path

import jax.numpy as jnp
import numpy as np

from dynamics.data.base import DATASETS, Dataset, take_subset
from dynamics.errors import ConfigError

NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def read_npz(path: str | None) -> dict[str, np.ndarray]:
    """The four arrays of ``data.path``; one-line ``ConfigError`` when the file or an array is missing."""
    if not path:
        raise ConfigError("data.path=None is invalid: allowed the path of an .npz file with arrays "
                          f"{', '.join(NPZ_ARRAYS)}")
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"data.path={path!r} is invalid: no such file")
    try:
        with np.load(file, allow_pickle=False) as npz:
            missing = [k for k in NPZ_ARRAYS if k not in npz.files]
            if missing:
                raise ConfigError(f"data.path={path!r} is invalid: the file lacks array(s) "
                                  f"{', '.join(missing)} (has {', '.join(npz.files) or 'none'})")
            arrays = {k: np.asarray(npz[k]) for k in NPZ_ARRAYS}
    except ConfigError:
        raise
    except Exception as err:  # not an npz, pickled objects, a truncated file
        raise ConfigError(f"data.path={path!r} is invalid: cannot read it as .npz "
                          f"({type(err).__name__}: {err})") from None
    for split in ("train", "test"):
        if len(arrays[f"x_{split}"]) != len(arrays[f"y_{split}"]):
            raise ConfigError(f"data.path={path!r} is invalid: x_{split} and y_{split} have different "
                              "lengths")
    return arrays


def npz_task(arrays: dict[str, np.ndarray]) -> tuple[int, dict[str, np.ndarray]]:
    """``(num_classes, arrays)``: integer 1-D labels are a classification task with max + 1 classes;
    float targets are regression (1-D targets become one column)."""
    y = arrays["y_train"]
    if np.issubdtype(y.dtype, np.integer) and y.ndim == 1:
        num_classes = int(max(y.max(initial=0), arrays["y_test"].max(initial=0))) + 1
        return num_classes, arrays
    out = dict(arrays)
    for k in ("y_train", "y_test"):
        out[k] = out[k].reshape(len(out[k]), -1).astype(np.float64)
    return 0, out


@DATASETS.register("npz")
def npz(key, *, dtype=jnp.float32, path=None, n_train=None, n_test=None, **_) -> Dataset:
    """Your arrays from ``data.path``: ``x_train, y_train, x_test, y_test`` (integer labels or float
    regression targets), the first ``n_train`` / ``n_test`` examples."""
    del key  # the file fixes the data
    num_classes, a = npz_task(read_npz(path))
    return take_subset("npz", a["x_train"], a["y_train"], a["x_test"], a["y_test"], num_classes,
                       n_train, n_test, dtype)


@DATASETS.register("digits")
def digits(key, *, dtype=jnp.float32, n_train=None, n_test=None, **_) -> Dataset:
    """scikit-learn's digits: 1,797 8×8 images (64 features scaled to [0, 1]), 10 classes; a fixed
    split (seed 0 permutation) of 1,437 train and 360 test examples, the same for every run seed."""
    del key
    from sklearn.datasets import load_digits

    bunch = load_digits()
    order = np.random.default_rng(0).permutation(len(bunch.target))
    x, y = bunch.data[order] / 16.0, bunch.target[order].astype(np.int32)
    cut = 1437
    return take_subset("digits", x[:cut], y[:cut], x[cut:], y[cut:], 10, n_train, n_test, dtype)
