"""MLflow: one run in a local file store ``<run dir>/mlruns`` (``mlflow ui --backend-store-uri
<run dir>/mlruns``), or in ``logger.mlflow.tracking_uri``.

The config as flattened params (``optimizer.lr``), each metric at its step, each final summary as an
artifact ``summary.json`` plus the verdict's numbers as metrics (``verdict.passed``), the status as the
tag ``status``, and the figures as artifacts under ``figures/``.
"""

import os
import time
from pathlib import Path

from dynamics.loggers import Logger, flatten, numeric

MAX_PARAMS, MAX_METRICS = 100, 1000  # MLflow's limits per log_batch


class MlflowLogger(Logger):
    def __init__(self, root: Path, cfg, config: dict):
        opts = cfg.logger.mlflow
        uri = opts.tracking_uri
        if uri is None:
            uri = (root / "mlruns").as_uri()
            # MLflow 3 keeps its file store only on request; it is the no-server, no-database choice
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.root = root
        self.client = MlflowClient(tracking_uri=uri)
        experiment = self.client.get_experiment_by_name(opts.experiment)
        exp_id = (experiment.experiment_id if experiment is not None
                  else self.client.create_experiment(opts.experiment))
        self.run_id = self.client.create_run(exp_id, run_name=cfg.name).info.run_id
        params = [Param(k, str(v)[:6000]) for k, v in flatten(config).items()]
        for i in range(0, len(params), MAX_PARAMS):
            self.client.log_batch(self.run_id, params=params[i:i + MAX_PARAMS])
        self.last_step = 0

    def _metrics(self, values: dict[str, float], step: int) -> list:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        return [Metric(k, v, now, step) for k, v in values.items()]

    def _log(self, metrics: list) -> None:
        for i in range(0, len(metrics), MAX_METRICS):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + MAX_METRICS])

    def log_rows(self, prefix: str, rows: list[dict]) -> None:
        metrics = []
        for row in rows:
            step = int(row.get("step", 0))
            self.last_step = max(self.last_step, step)
            metrics += self._metrics({prefix + k: v for k, v in numeric(row).items()}, step)
        self._log(metrics)

    def log_summary(self, prefix: str, summary: dict) -> None:
        verdict = {f"{prefix}verdict.{k}": float(v)
                   for k, v in flatten(summary.get("verdict") or {}).items()
                   if isinstance(v, (int, float))}
        self._log(self._metrics(verdict, self.last_step))
        self.client.log_dict(self.run_id, summary, f"{prefix}summary.json")

    def finish(self, summary: dict, figures: list[Path]) -> None:
        for path in figures:
            self.client.log_artifact(self.run_id, str(path),
                                     path.parent.relative_to(self.root).as_posix())
        status = summary.get("status")
        self.client.set_tag(self.run_id, "status", str(status))
        self.client.set_terminated(self.run_id, {"finished": "FINISHED", "diverged": "FINISHED",
                                                 "interrupted": "KILLED"}.get(status, "FAILED"))
