"""The run directory: metrics.jsonl (streamed), summary.json, figures/.

Contract (every task writes it; analysis code and checks read it):

- ``metrics.jsonl``: one JSON object per logged step, at least ``step`` and ``loss``, plus the probes'
  metrics (``sharpness``, …) on the steps they ran. Appended and flushed as each chunk finishes.
  Non-finite values are written as ``null``.
- ``summary.json``: ``status`` (``running`` while the run goes on, then ``finished`` | ``diverged`` |
  ``failed`` | ``interrupted``), ``hparams`` (at least ``lr``), ``final`` metrics, ``wall_time_s``,
  ``verdict`` (the claim's numbers and ``passed``), and ``diverged_step`` / ``error`` / ``signal`` where
  they apply.
- ``figures/*.png``.
- ``.lock``: held (``flock``) by the process running in the directory; a second run into it refuses.
- ``previous/<time>/``: the outputs of an earlier run in the same directory, moved aside when a new
  run starts there.
"""

import datetime
import fcntl
import json
import math
import os
import shutil
from pathlib import Path

import yaml

# What a run writes into its directory (moved to previous/<time>/ when a new run starts there).
RUN_OUTPUTS = ("summary.json", "metrics.jsonl", "figures", "checkpoints", "points", "seeds",
               "wandb", "tensorboard", "mlruns")  # the last three: the loggers' (dynamics.loggers)
LOCK = ".lock"
# Observers of what every RunDir writes: objects with ``rows(path, rows)`` and ``summary(path, summary,
# final)``, called after metrics.jsonl / summary.json are written. ``dynamics.run`` attaches the run's
# loggers (``dynamics.loggers``) here for the run's duration.
OBSERVERS: list = []


class RunDirInUse(RuntimeError):
    """Another process is running in this directory."""


def lock_run_dir(path: str | Path):
    """Take the directory's lock (``.lock``, ``flock``: released when the process dies, also on
    SIGKILL); return the open file, to be closed when the run ends. Raises ``RunDirInUse`` naming the
    holder when another process holds it. The Hydra files of the holder (``.hydra/*.yaml``, which Hydra
    rewrites before any code of ours runs) are restored from ``.hydra/locked/`` then."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    fh = open(path / LOCK, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        saved = path / ".hydra" / "locked"
        for copy in saved.glob("*.yaml"):
            shutil.copyfile(copy, path / ".hydra" / copy.name)
        raise RunDirInUse(f"run directory {path} is in use by {holder}; choose another "
                          "hydra.run.dir (or wait for it to end)") from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
    fh.flush()
    hydra_dir = path / ".hydra"
    if hydra_dir.is_dir():
        (hydra_dir / "locked").mkdir(exist_ok=True)
        for f in hydra_dir.glob("*.yaml"):
            shutil.copyfile(f, hydra_dir / "locked" / f.name)
    return fh


def is_locked(path: str | Path) -> bool:
    """Whether a live process holds ``path/.lock`` (on this machine; network file systems may not
    propagate ``flock``)."""
    lock = Path(path) / LOCK
    if not lock.exists():
        return False
    with open(lock) as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


def archive_previous(path: str | Path) -> Path | None:
    """Move an earlier run's outputs (summary, metrics, figures, checkpoints, points, seeds) into
    ``path/previous/<time>/`` so they cannot be mistaken for the new run's; return that folder."""
    path = Path(path)
    found = [path / name for name in RUN_OUTPUTS if (path / name).exists()]
    if not found:
        return None
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S.%f")
    target = path / "previous" / stamp
    target.mkdir(parents=True)
    for item in found:
        item.rename(target / item.name)
    return target


def read_summary(path: str | Path) -> dict | None:
    """``path/summary.json`` or None (missing or unreadable)."""
    try:
        return json.loads((Path(path) / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class RunDir:
    """Writes one run's outputs into ``path`` (Hydra's output directory)."""

    def __init__(self, path: str | Path, *, resume: bool = False):
        """Open ``path``; with ``resume`` an existing metrics.jsonl is kept (see ``rewind``)."""
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.figures = self.path / "figures"
        self.checkpoints = self.path / "checkpoints"
        self.metrics_path = self.path / "metrics.jsonl"
        keep = resume and self.metrics_path.exists()
        self._metrics = open(self.metrics_path, "r+" if keep else "w+")
        self.rows: list[dict] = []
        # metrics.jsonl's bytes and the step at the last chunk end (None: the task does not mark)
        self.mark_offset: int | None = None
        self.mark_step: int | None = None

    def offset(self) -> int:
        """Bytes of metrics.jsonl written so far (stored in checkpoints)."""
        self._metrics.flush()
        return self._metrics.tell()

    def rewind(self, offset: int) -> None:
        """Cut metrics.jsonl back to ``offset`` bytes (the last checkpoint) and reload its rows."""
        self._metrics.seek(0)
        kept = self._metrics.read(offset)
        self._metrics.seek(offset)
        self._metrics.truncate()
        self.rows = [json.loads(line) for line in kept.splitlines() if line.strip()]

    def mark(self, step: int) -> None:
        """Record that the rows of every step before ``step`` are written (a chunk ended there)."""
        self.mark_offset, self.mark_step = self.offset(), step

    def rewind_to_mark(self) -> int | None:
        """Cut metrics.jsonl back to the last ``mark`` (an interrupted chunk's partial rows go); return
        the marked step, or None when the task never marked one."""
        if self.mark_offset is not None and not self._metrics.closed:
            self.rewind(self.mark_offset)
        return self.mark_step

    def log(self, rows: list[dict]) -> None:
        """Append rows to metrics.jsonl and flush, so a crash loses at most the current chunk."""
        for row in rows:
            row = _clean(row)
            self._metrics.write(json.dumps(row) + "\n")
            self.rows.append(row)
        self._metrics.flush()
        for observer in OBSERVERS:
            observer.rows(self.path, self.rows[len(self.rows) - len(rows):])

    def write_config(self, config: dict) -> Path:
        """Write ``.hydra/config.yaml`` for a run that Hydra did not launch (a vmapped sweep point)."""
        path = self.path / ".hydra" / "config.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def close(self) -> None:
        """Close metrics.jsonl (``write_summary`` does, for a final summary)."""
        self._metrics.close()

    def interrupted(self, err: BaseException) -> dict:
        """The summary fields of a run stopped by ``err`` (SIGINT, or SIGTERM's ``Terminated``): an
        interrupted chunk's partial rows are cut back to the last chunk end (``rewind_to_mark``)."""
        step = self.rewind_to_mark()
        if step is None:  # a task that does not mark chunk ends: the last logged step
            step = self.rows[-1]["step"] if self.rows else 0
        return {"status": "interrupted", "signal": getattr(err, "signal", "SIGINT"),
                "steps_completed": step, "final": self.rows[-1] if self.rows else {}}

    def write_summary(self, summary: dict, *, final: bool = True) -> Path:
        """Write summary.json atomically; a ``final`` one also closes metrics.jsonl."""
        if final:
            self._metrics.close()
        path = self.path / "summary.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(_clean(summary), indent=2, sort_keys=True) + "\n")
        tmp.replace(path)
        for observer in OBSERVERS:
            observer.summary(self.path, _clean(summary), final)
        return path

    def columns(self) -> dict[str, list]:
        """The logged rows as columns (``None`` where a row lacks a key)."""
        keys = sorted({k for row in self.rows for k in row})
        return {k: [row.get(k) for row in self.rows] for k in keys}
