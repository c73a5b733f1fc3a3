"""Read runs and multiruns back as rows (one per run)."""

import json
from pathlib import Path

import yaml


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, name + "."))
        else:
            out[name] = v
    return out


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The rows of one run's metrics.jsonl."""
    path = Path(run_dir) / "metrics.jsonl"
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_runs(path: str | Path, *, metrics: bool = False) -> list[dict]:
    """Gather every run under ``path`` (a run directory or a multirun directory) into rows.

    Each row holds the run directory (``run_dir``), the flattened config (``config.<key>`` from
    ``.hydra/config.yaml``), the flattened summary (the points of a vmapped sweep count as runs; their
    parent directory does not) (``status``, ``hparams.lr``, ``verdict.passed``, …) and,
    with ``metrics=True``, the list of metric rows under ``metrics``. ``pandas.DataFrame(rows)`` makes a
    table of them.
    """
    root = Path(path)
    rows = []
    for summary_path in sorted(root.rglob("summary.json")):
        run_dir = summary_path.parent
        summary = json.loads(summary_path.read_text())
        if "vmap_points" in summary:  # the parent of a vmapped sweep: its points are the runs
            continue
        row = {"run_dir": str(run_dir)}
        config_path = run_dir / ".hydra" / "config.yaml"
        if config_path.exists():
            row.update(_flatten(yaml.safe_load(config_path.read_text()) or {}, "config."))
        row.update(_flatten(summary))
        if metrics:
            row["metrics"] = read_metrics(run_dir)
        rows.append(row)
    return rows
