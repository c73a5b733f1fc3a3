"""Helpers shared by the benchmark scripts (run as `python benchmarks/<name>.py`): timing, and handing
an MLP problem to a torch peer in the side environment."""

import os
import time

import numpy as np


def best_of(fn, repeats=3):
    """``(best wall time over repeats, last result)`` after one warm-up call (compilation)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def save_mlp_problem(path, params, num_layers: int, **arrays) -> None:
    """Write ``arrays`` (inputs, targets) and the MLP's ``dense_i`` weights as ``w{i}``/``b{i}`` to an npz
    that ``benchmarks/torch_mlp.py`` reads."""
    for i in range(num_layers):
        arrays[f"w{i}"] = np.asarray(params[f"dense_{i}"]["kernel"])
        arrays[f"b{i}"] = np.asarray(params[f"dense_{i}"]["bias"])
    np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})


def peer_env() -> dict:
    """The environment for a peer process: ours without ``OMP_NUM_THREADS`` (torch picks its threads)."""
    return {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
