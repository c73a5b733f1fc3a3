"""Read runs and multiruns back as rows (one per run)."""

import json
import re
import warnings
from pathlib import Path

import yaml

from dynamics.io.writer import LOCK, is_locked


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, name + "."))
        else:
            out[name] = v
    return out


def natural_key(path: Path | str) -> list:
    """Sort key that orders ``points/2`` before ``points/10`` (digit runs compare as numbers)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part)
            for part in re.split(r"(\d+)", str(path)) if part]


# A parent run (a vmapped sweep, a claim over seeds, eos_optimizers) lists its children under these
# summary keys and keeps them in these folders; the children are the runs.
PARENT_KEYS = ("vmap_points", "seed_runs", "optimizer_runs")
CHILD_DIRS = ("points", "seeds", "optimizers")


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The rows of one run's metrics.jsonl; a line that is not JSON (a run killed while writing it)
    is skipped with a warning naming the file and line."""
    path = Path(run_dir) / "metrics.jsonl"
    rows = []
    with open(path) as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                warnings.warn(f"{path}:{number}: skipped a line that is not JSON ({err.msg})",
                              RuntimeWarning, stacklevel=2)
    return rows


def _run_dirs(root: Path) -> list[Path]:
    """Directories under ``root`` (itself included) that hold a run: a summary.json, or a
    metrics.jsonl / .hydra/config.yaml of a run that died before writing one. Earlier runs moved
    aside into ``previous/`` are not listed."""
    found = set()
    for pattern in ("summary.json", "metrics.jsonl", ".hydra/config.yaml"):
        for p in root.rglob(pattern):
            run_dir = p.parent.parent if pattern.startswith(".hydra") else p.parent
            if "previous" not in run_dir.relative_to(root).parts:
                found.add(run_dir)
    return sorted(found, key=natural_key)


def _held(run_dir: Path) -> bool:
    """Whether a live process holds the lock of this run, or of the run enclosing it (the points of a
    vmapped sweep, the seeds of a claim: ``<run>/points/<i>``)."""
    for d in (run_dir, run_dir.parent.parent):
        if (d / LOCK).exists():
            return is_locked(d)
    return False


def _enclosing_status(run_dir: Path) -> str | None:
    """``interrupted`` for a point or seed of a run that was interrupted (it ends with its parent)."""
    if run_dir.parent.name not in ("points", "seeds"):
        return None
    try:
        parent = json.loads((run_dir.parent.parent / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return "interrupted" if parent.get("status") == "interrupted" else None


def load_runs(path: str | Path, *, metrics: bool = False) -> list[dict]:
    """Gather every run under ``path`` (a run directory or a multirun directory) into rows, in the
    natural order of their directories (0, 1, 2, …, 10).

    Each row holds the run directory (``run_dir``), the flattened config (``config.<key>`` from
    ``.hydra/config.yaml``), the flattened summary (``status``, ``hparams.lr``, ``verdict.passed``, …)
    and, with ``metrics=True``, the list of metric rows under ``metrics``. The points of a vmapped sweep
    and the seeds of a multi-seed claim count as runs; their parent directory does not.

    Every run is listed with its status: a run that is going on is ``running``; one whose process died
    without writing a final status (SIGKILL, power loss) is ``killed``; a directory with a config but
    no summary at all (killed before its first step) is ``killed`` too; a point or seed of an
    ``interrupted`` run is ``interrupted``. For those, ``steps_completed``
    comes from the last metrics row. An unreadable summary or metrics line is skipped with a warning.
    ``to_frame(rows)`` makes a pandas table of them.
    """
    root = Path(path)
    rows = []
    for run_dir in _run_dirs(root):
        summary_path = run_dir / "summary.json"
        summary: dict = {}
        if summary_path.exists():
            try:
                summary = json.loads(summary_path.read_text())
            except (OSError, json.JSONDecodeError) as err:
                warnings.warn(f"{summary_path}: skipped an unreadable summary ({err})",
                              RuntimeWarning, stacklevel=2)
                continue
        if any(k in summary for k in PARENT_KEYS):  # a parent: its points are the runs
            continue
        if any((run_dir / d).is_dir() for d in CHILD_DIRS):
            continue  # the parent of a sweep that has not written its summary yet
        row = {"run_dir": str(run_dir)}
        config_path = run_dir / ".hydra" / "config.yaml"
        if config_path.exists():
            row.update(_flatten(yaml.safe_load(config_path.read_text()) or {}, "config."))
        row.update(_flatten(summary))
        if summary.get("status", "running") == "running" and not _held(run_dir):
            row["status"] = _enclosing_status(run_dir) or "killed"
        elif "status" not in summary:
            row["status"] = "running"
        rows_of_run = read_metrics(run_dir) if (run_dir / "metrics.jsonl").exists() else []
        if summary.get("status", "running") == "running" and rows_of_run:
            row["steps_completed"] = rows_of_run[-1]["step"]
        if metrics:
            row["metrics"] = rows_of_run
        rows.append(row)
    return rows


def to_frame(rows: list[dict]):
    """``load_runs`` rows as a ``pandas.DataFrame`` (pandas is an optional extra)."""
    try:
        import pandas
    except ImportError:
        raise ImportError("to_frame needs pandas: pip install -e '.[pandas]' "
                          "(or pip install pandas)") from None
    return pandas.DataFrame(rows)
