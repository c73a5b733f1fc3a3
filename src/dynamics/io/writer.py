"""The run directory: metrics.jsonl (streamed), summary.json, figures/.

Contract (every task writes it; analysis code and checks read it):

- ``metrics.jsonl``: one JSON object per logged step, at least ``step`` and ``loss``, plus the probes'
  metrics (``sharpness``, …) on the steps they ran. Appended and flushed as each chunk finishes.
  Non-finite values are written as ``null``.
- ``summary.json``: ``status`` (``finished`` | ``diverged`` | ``failed``), ``hparams`` (at least
  ``lr``), ``final`` metrics, ``wall_time_s``, ``verdict`` (the claim's numbers and ``passed``), and
  ``diverged_step`` / ``error`` where they apply.
- ``figures/*.png``.
"""

import json
import math
from pathlib import Path

import yaml


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

    def log(self, rows: list[dict]) -> None:
        """Append rows to metrics.jsonl and flush, so a crash loses at most the current chunk."""
        for row in rows:
            row = _clean(row)
            self._metrics.write(json.dumps(row) + "\n")
            self.rows.append(row)
        self._metrics.flush()

    def write_config(self, config: dict) -> Path:
        """Write ``.hydra/config.yaml`` for a run that Hydra did not launch (a vmapped sweep point)."""
        path = self.path / ".hydra" / "config.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def write_summary(self, summary: dict) -> Path:
        self._metrics.close()
        path = self.path / "summary.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(_clean(summary), indent=2, sort_keys=True) + "\n")
        tmp.replace(path)
        return path

    def columns(self) -> dict[str, list]:
        """The logged rows as columns (``None`` where a row lacks a key)."""
        keys = sorted({k for row in self.rows for k in row})
        return {k: [row.get(k) for row in self.rows] for k in keys}
