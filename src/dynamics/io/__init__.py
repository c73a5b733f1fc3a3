"""Run outputs: ``RunDir`` writes them, ``load_runs`` reads runs and multiruns back."""

from dynamics.io.load import load_runs, read_metrics
from dynamics.io.writer import RunDir

__all__ = ["RunDir", "load_runs", "read_metrics"]
