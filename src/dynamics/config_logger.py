"""``logger.*``: the loggers a run also writes to (besides metrics.jsonl and summary.json).

``logger.names=[wandb,tensorboard,mlflow]`` picks any of them; each writes inside the run directory and
needs no network. Each is an optional extra: ``pip install 'dynamics[wandb]'`` (``tensorboard``,
``mlflow``); a logger whose package is missing fails at validation, before the run starts.
"""

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class WandbLoggerConfig:
    """``logger.wandb.*``: a Weights & Biases run in ``<run dir>/wandb``."""

    project: str = "dynamics"
    entity: Optional[str] = None
    mode: str = "offline"  # offline (no network; `wandb sync <run dir>/wandb/offline-run-*` later) | online
    group: Optional[str] = None
    tags: list[str] = field(default_factory=list)


@dataclass
class TensorboardLoggerConfig:
    """``logger.tensorboard.*``: event files in ``<run dir>/tensorboard`` (``tensorboard --logdir``)."""

    flush_secs: int = 10


@dataclass
class MlflowLoggerConfig:
    """``logger.mlflow.*``: an MLflow run; by default in a local file store ``<run dir>/mlruns``."""

    tracking_uri: Optional[str] = None  # None: file:<run dir>/mlruns; or sqlite:///…, http://…
    experiment: str = "dynamics"


@dataclass
class LoggerConfig:
    """``logger.*``: ``names`` lists the loggers (none by default); the others configure each."""

    names: list[str] = field(default_factory=list)  # wandb | tensorboard | mlflow
    wandb: WandbLoggerConfig = field(default_factory=WandbLoggerConfig)
    tensorboard: TensorboardLoggerConfig = field(default_factory=TensorboardLoggerConfig)
    mlflow: MlflowLoggerConfig = field(default_factory=MlflowLoggerConfig)
