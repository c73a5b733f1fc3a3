"""Run outputs: ``RunDir`` writes them, ``load_runs`` reads runs and multiruns back."""

from dynamics.io.load import load_runs, read_metrics, to_frame
from dynamics.io.writer import RunDir, RunDirInUse, archive_previous, lock_run_dir, read_summary

__all__ = ["RunDir", "RunDirInUse", "archive_previous", "load_runs", "lock_run_dir", "read_metrics",
           "read_summary", "to_frame"]
