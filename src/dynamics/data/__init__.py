"""Data sets that need no download, as in-memory arrays: ``build_dataset(name, key, **options)``."""

from dynamics.data import cifar10, files, mnist1d, synthetic  # noqa: F401  (registers the data sets)
from dynamics.data.base import BATCH_SAMPLERS, DATASETS, Dataset, build_dataset, sample_batch

__all__ = ["BATCH_SAMPLERS", "DATASETS", "Dataset", "build_dataset", "sample_batch"]
