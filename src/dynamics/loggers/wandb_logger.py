"""Weights & Biases: a run in ``<run dir>/wandb``, offline by default (``logger.wandb.mode``).

The config as the run's config, each metrics row with its ``step`` as the x-axis (``define_metric``;
a seed's or sweep point's rows under their prefix, each against its own step), each final summary's
verdict in the run summary (``verdict.passed``, …), and the figures as images. Offline runs are uploaded
later with ``wandb sync <run dir>/wandb/offline-run-*``.
"""

from pathlib import Path

from dynamics.loggers import Logger, flatten, numeric


class WandbLogger(Logger):
    def __init__(self, root: Path, cfg, config: dict):
        import wandb

        opts = cfg.logger.wandb
        self.wandb = wandb
        self.root = root
        (root / "wandb").mkdir(exist_ok=True)  # wandb.init(dir=root) writes root/wandb/
        self.run = wandb.init(
            project=opts.project, entity=opts.entity, group=opts.group, tags=list(opts.tags) or None,
            name=cfg.name, mode=opts.mode, dir=str(root), config=config,
            settings=wandb.Settings(console="off", silent=True, x_disable_stats=True,
                                    x_disable_machine_info=True))
        self.defined: set[str] = set()

    def log_rows(self, prefix: str, rows: list[dict]) -> None:
        for row in rows:
            values = {prefix + k: v for k, v in numeric(row).items()}
            for key in values.keys() - self.defined:
                self.run.define_metric(key, step_metric=prefix + "step")
                self.defined.add(key)
            values[prefix + "step"] = int(row.get("step", 0))
            self.run.log(values)

    def log_summary(self, prefix: str, summary: dict) -> None:
        verdict = flatten(summary.get("verdict") or {})
        self.run.summary.update({f"{prefix}verdict.{k}": v for k, v in verdict.items()
                                 if isinstance(v, (int, float, str))})
        self.run.summary[f"{prefix}status"] = summary.get("status")

    def finish(self, summary: dict, figures: list[Path]) -> None:
        images = {"figures/" + p.relative_to(self.root).with_suffix("").as_posix().replace("figures/", ""):
                  self.wandb.Image(str(p)) for p in figures}
        if images:
            self.run.log(images)
        self.run.finish(exit_code=0 if summary.get("status") in ("finished", "diverged") else 1)
