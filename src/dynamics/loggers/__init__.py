"""Loggers: a run's metrics, config, verdict and figures also go to wandb, TensorBoard or MLflow.

``logger.names=[wandb,tensorboard,mlflow]`` (any of them; none by default). Each writes inside the run
directory (``wandb/``, ``tensorboard/``, ``mlruns/``) and needs no network: wandb runs offline
(``wandb sync`` uploads later), TensorBoard writes event files, MLflow a local file store.

What each receives:

- every row of metrics.jsonl (and of the seeds' and sweep points' metrics.jsonl, their keys prefixed by
  the sub-directory, ``seeds/1/loss``), at the row's ``step``, as it is written;
- the config (``dataclasses.asdict`` of the typed ``Config``) when the run starts;
- each final summary.json (the verdict's numbers and ``passed``), and at the end the run's figures.

The loggers observe ``dynamics.io.RunDir`` (``dynamics.io.writer.OBSERVERS``); ``dynamics.run`` attaches
them for the run's duration with ``attached``. A logger that raises is switched off for the rest of the
run with a warning: the run's own outputs never depend on it. Rows dropped from metrics.jsonl when an
interrupted chunk is rewound stay in the loggers; a resumed run is a new logger run from its checkpoint.
"""

import contextlib
import dataclasses
import importlib
import importlib.util
import logging
from pathlib import Path

from dynamics.errors import ConfigError

log = logging.getLogger("dynamics")

# name -> (class "module:attribute", the package it imports, the pip extra that installs it)
LOGGERS = {
    "wandb": ("dynamics.loggers.wandb_logger:WandbLogger", "wandb", "wandb"),
    "tensorboard": ("dynamics.loggers.tensorboard_logger:TensorboardLogger", "tensorboard",
                    "tensorboard"),
    "mlflow": ("dynamics.loggers.mlflow_logger:MlflowLogger", "mlflow", "mlflow"),
}
# Sub-directories the loggers write (not searched for figures).
LOGGER_DIRS = ("wandb", "tensorboard", "mlruns")


def check_loggers(logger_cfg) -> None:
    """Raise ``ConfigError`` (one line) for an unknown logger name or one whose package is missing."""
    for name in logger_cfg.names:
        if name not in LOGGERS:
            raise ConfigError(f"logger.names: unknown logger {name!r}; choose from "
                              f"{', '.join(LOGGERS)}")
        _, module, extra = LOGGERS[name]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"logger.names: {name} needs its package: pip install 'dynamics[{extra}]'")


def numeric(row: dict) -> dict[str, float]:
    """A metrics row's numbers, without ``step`` (``None``, strings and lists are left out)."""
    return {k: float(v) for k, v in row.items()
            if k != "step" and isinstance(v, (int, float))}


def flatten(tree, prefix: str = "", sep: str = ".") -> dict:
    """``{"a": {"b": 1}} -> {"a.b": 1}``; lists stay values."""
    if not isinstance(tree, dict):
        return {prefix: tree} if prefix else {}
    out = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}{sep}{key}" if prefix else str(key), sep))
    return out


def figures_of(root: Path) -> list[Path]:
    """The run's figures: every ``*.png`` under ``root`` but in ``previous/`` and the loggers' dirs."""
    found = []
    for path in sorted(root.rglob("*.png")):
        parts = path.relative_to(root).parts
        if "previous" not in parts and parts[0] not in LOGGER_DIRS:
            found.append(path)
    return found


class Logger:
    """One logger backend. ``prefix`` is ``""`` for the run's own rows, ``"seeds/1/"`` for a seed's."""

    def __init__(self, root: Path, cfg, config: dict):
        """Start a logger run for the run directory ``root`` (typed ``cfg``, plain ``config``)."""

    def log_rows(self, prefix: str, rows: list[dict]) -> None:
        """Log metrics rows (each with ``step``)."""

    def log_summary(self, prefix: str, summary: dict) -> None:
        """Log a final summary.json (the verdict)."""

    def finish(self, summary: dict, figures: list[Path]) -> None:
        """Log the figures and close the logger run; ``summary`` is the run's final one."""


def _load(name: str):
    target = LOGGERS[name][0]
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


class Loggers:
    """The loggers of one run: an observer of every RunDir under ``root`` (``writer.OBSERVERS``).

    The backends start at the first thing written (after an earlier run's outputs were moved aside),
    and finish at the run directory's final summary (or, failing that, when detached).
    """

    def __init__(self, cfg, root: str | Path):
        self.cfg, self.root = cfg, Path(root).resolve()
        self.backends: dict[str, Logger] | None = None
        self.finished = False

    def _start(self) -> None:
        if self.backends is None:
            config = dataclasses.asdict(self.cfg)
            self.backends = {}
            for name in self.cfg.logger.names:
                try:
                    self.backends[name] = _load(name)(self.root, self.cfg, config)
                except Exception as err:  # noqa: BLE001 - a logger never stops the run
                    log.warning("logger %s could not start (%s: %s); the run goes on without it",
                                name, type(err).__name__, err)

    def _each(self, method: str, *args) -> None:
        for name, backend in list(self.backends.items()):
            try:
                getattr(backend, method)(*args)
            except Exception as err:  # noqa: BLE001
                log.warning("logger %s failed (%s: %s); it is off for the rest of the run", name,
                            type(err).__name__, err)
                del self.backends[name]

    def _prefix(self, path: Path) -> str | None:
        try:
            rel = Path(path).resolve().relative_to(self.root)
        except ValueError:
            return None
        return "" if rel == Path(".") else rel.as_posix() + "/"

    def rows(self, path: Path, rows: list[dict]) -> None:
        prefix = self._prefix(path)
        if prefix is None or self.finished or not rows:
            return
        self._start()
        self._each("log_rows", prefix, rows)

    def summary(self, path: Path, summary: dict, final: bool) -> None:
        prefix = self._prefix(path)
        if prefix is None or self.finished:
            return
        self._start()
        if final:
            self._each("log_summary", prefix, summary)
            if prefix == "":
                self._each("finish", summary, figures_of(self.root))
                self.finished = True

    def close(self) -> None:
        """Finish backends the run did not (it raised before its final summary)."""
        if self.backends is not None and not self.finished:
            self._each("finish", {"status": "failed"}, figures_of(self.root))
            self.finished = True


@contextlib.contextmanager
def attached(cfg, root: str | Path):
    """Attach ``cfg.logger.names``'s loggers to the run directory ``root`` while the block runs."""
    from dynamics.io.writer import OBSERVERS

    if not cfg.logger.names:
        yield None
        return
    loggers = Loggers(cfg, root)
    OBSERVERS.append(loggers)
    try:
        yield loggers
    finally:
        OBSERVERS.remove(loggers)
        loggers.close()


__all__ = ["LOGGERS", "Logger", "Loggers", "attached", "check_loggers"]
