"""The task registry and progress reporting shared by tasks."""

import logging
import shutil
import sys
from collections.abc import Callable

from dynamics.registry import Registry

TASKS: Registry[Callable] = Registry("task", "task")
# A task's checks of its own keys (``check(cfg) -> None``, raising ConfigError), run by
# ``dynamics.validation.validate`` with the other checks, before the run directory exists.
TASK_CHECKS: Registry[Callable] = Registry("task check", "task")
# Tasks that judge ``claim.seeds`` themselves (the train task vmaps them); the others run once per seed.
SEEDS_VMAPPED = {"train"}
log = logging.getLogger("dynamics")


def run_task(cfg, run) -> dict:
    """Run ``cfg.task`` into ``run``, over the claim's seeds (``claim.seeds``)."""
    task = TASKS.get(cfg.task)
    log.info("%s: task %s, claim %s, seed %d%s", cfg.name, cfg.task, cfg.claim.name, cfg.seed,
             f" (+{cfg.claim.seeds - 1} more)" if cfg.claim.seeds > 1 else "")
    if cfg.claim.seeds > 1 and cfg.task not in SEEDS_VMAPPED:
        from dynamics.tasks.seeds import run_seeds

        return run_seeds(task, cfg, run)
    return task(cfg, run)


class Progress:
    """A tqdm bar on a terminal, otherwise a quiet log line every 10 % of the steps."""

    def __init__(self, total: int, start: int = 0, enabled: bool | None = None, desc: str = ""):
        self.total, self.done, self.next_log = total, start, start
        self.bar = None
        if enabled is None:  # a bar only where one can be drawn (a terminal with columns)
            enabled = sys.stderr.isatty() and shutil.get_terminal_size((0, 0)).columns > 0
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, desc=desc, dynamic_ncols=True)

    def update(self, n: int, **postfix) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)
        elif self.done >= self.next_log or self.done == self.total:
            details = " ".join(f"{k}={v:.4g}" for k, v in postfix.items() if v is not None)
            log.info("step %d/%d %s", self.done, self.total, details)
            self.next_log = self.done + max(self.total // 10, 1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
