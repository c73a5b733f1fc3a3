"""Tasks: one per experiment family, ``task(cfg, run_dir) -> summary``, selected by ``task:``."""

from dynamics.tasks.base import TASKS, run_task
from dynamics.tasks import train  # noqa: F401,E402  (registers the tasks)
from dynamics.tasks import ntk  # noqa: F401,E402
from dynamics.tasks import ntk_width  # noqa: F401,E402
from dynamics.tasks import ntk_prompt  # noqa: F401,E402
from dynamics.tasks import kernel_rich, label_noise, label_noise_flow, margin, mirror_descent  # noqa: F401,E402
from dynamics.tasks import sde  # noqa: F401,E402
from dynamics.tasks import svag, sqrt_scaling  # noqa: F401,E402
from dynamics.tasks import central_flow  # noqa: F401,E402
from dynamics.tasks import eos_optimizers  # noqa: F401,E402

__all__ = ["TASKS", "run_task"]
