"""Tasks: one per experiment family, ``task(cfg, run_dir) -> summary``, selected by ``task:``."""

from dynamics.tasks.base import TASKS
from dynamics.tasks import train  # noqa: F401,E402  (registers the tasks)

__all__ = ["TASKS"]
