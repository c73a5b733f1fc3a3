"""Command line: ``python -m dynamics.run +exp=NAME [key=value ...]`` (add ``-m`` to sweep).

The only module that knows Hydra. It composes ``conf/`` onto the typed schema, checks values, runs the
task named by ``task:`` in Hydra's output directory, and writes ``summary.json``. A bad value ends the
run with one line naming the key (exit code 2); a diverging run is recorded as ``diverged`` and exits 0
so a sweep goes on; an unexpected error is recorded as ``failed``.
"""

import logging
import sys
import time
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from dynamics.claims import failure_line
from dynamics.config import register_configs, validate
from dynamics.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
if not CONF_DIR.is_dir():
    raise RuntimeError(f"config directory {CONF_DIR} not found: install dynamics from its source tree "
                       "with `pip install -e .` so conf/ sits beside src/")

register_configs()
log = logging.getLogger("dynamics")
logging.getLogger("jax").setLevel(logging.WARNING)


def run(cfg, out_dir: str | Path, *, record_config_errors: bool = False) -> dict:
    """Run the task of a typed ``Config`` into ``out_dir`` and write summary.json; return the summary.

    ``ConfigError`` propagates so the caller can report it. An invalid config is caught before anything
    is built; with ``record_config_errors`` (sweeps) a ``failed`` summary is written for it first.
    Errors found while building (e.g. ``data.n_train`` too large) always leave a ``failed`` summary.
    """
    from dynamics.io import RunDir
    from dynamics.tasks import run_task

    try:
        validate(cfg)
    except ConfigError as err:
        if record_config_errors:
            RunDir(out_dir).write_summary({"status": "failed", "error": str(err), "name": cfg.name})
        raise
    run_dir = RunDir(out_dir, resume=cfg.resume)
    start = time.perf_counter()
    try:
        summary = run_task(cfg, run_dir)
    except ConfigError as err:
        run_dir.write_summary({"status": "failed", "error": str(err), "name": cfg.name})
        raise
    except Exception as err:  # recorded, so a sweep can go on
        log.error("run failed:\n%s", traceback.format_exc())
        summary = {"status": "failed", "error": f"{type(err).__name__}: {err}",
                   "hparams": {"lr": cfg.optimizer.lr, "seed": cfg.seed}}
    summary = {"name": cfg.name, **summary, "wall_time_s": time.perf_counter() - start}
    run_dir.write_summary(summary)
    return summary


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(dict_cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        cfg = OmegaConf.to_object(dict_cfg)
        summary = run(cfg, hydra_cfg.runtime.output_dir, record_config_errors=multirun)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        if multirun:
            return
        sys.exit(2)
    verdict = summary.get("verdict") or {}
    log.info("%s: status=%s %s (%s)", summary["name"], summary["status"], failure_line(verdict),
             hydra_cfg.runtime.output_dir)
    if summary["status"] == "failed" and not multirun:
        sys.exit(1)


if __name__ == "__main__":
    main()
