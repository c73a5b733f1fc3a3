"""Timing helper shared by the benchmark scripts (run as `python benchmarks/<name>.py`)."""

import time


def best_of(fn, repeats=3):
    """``(best wall time over repeats, last result)`` after one warm-up call (compilation)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out
