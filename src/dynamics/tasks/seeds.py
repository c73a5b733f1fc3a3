"""A claim over several seeds for tasks that do not vmap them: the task runs once per seed, in this
process, each seed into ``<run dir>/seeds/<seed>/`` (config, metrics.jsonl, summary.json, figures), and
the run's own summary holds the claim's verdict over the seeds (``dynamics.claims.seeds``) and
``figures/checks.png`` (each check's value per seed against its bound)."""

import dataclasses
import logging
import traceback

from dynamics.claims import aggregate, failure_line, seed_list
from dynamics.config import Config
from dynamics.errors import ConfigError
from dynamics.io import RunDir
from dynamics.plots import plot_claim_checks

log = logging.getLogger("dynamics")


def run_child(task, cfg: Config, child: RunDir, what: str) -> dict:
    """Run ``task`` into the child run directory ``child`` and write its summary: ``running`` while it
    runs, then its own. A config error stops everything; SIGINT / SIGTERM leave the child
    ``interrupted`` (with the step reached) and propagate; any other error is recorded there as
    ``failed`` (with the error) and the caller goes on (its claim counts the child as not passing)."""
    child.write_config(dataclasses.asdict(cfg))
    child.write_summary({"name": cfg.name, "status": "running", "steps_completed": 0}, final=False)
    try:
        summary = task(cfg, child)
    except ConfigError:
        child.close()
        raise
    except KeyboardInterrupt as err:
        child.write_summary({"name": cfg.name, **child.interrupted(err)})
        raise
    except Exception as err:
        log.error("%s failed:\n%s", what, traceback.format_exc())
        summary = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
    child.write_summary({"name": cfg.name, **summary})
    return summary


def run_seeds(task, cfg: Config, run: RunDir) -> dict:
    """Run ``task`` for each of the claim's seeds and judge the claim over them."""
    seeds = seed_list(cfg.seed, cfg.claim.seeds)
    entries = []
    for seed in seeds:
        seed_cfg = dataclasses.replace(cfg, seed=seed, claim=dataclasses.replace(cfg.claim, seeds=1))
        log.info("%s: seed %d (%d of %d)", cfg.name, seed, len(entries) + 1, len(seeds))
        summary = run_child(task, seed_cfg, RunDir(run.path / "seeds" / str(seed)), f"seed {seed}")
        log.info("%s: seed %d %s %s", cfg.name, seed, summary["status"],
                 failure_line(summary.get("verdict") or {}))
        entries.append({"seed": seed, **summary})
    verdict = aggregate(entries, min_pass_fraction=cfg.claim.min_pass_fraction, rule=cfg.claim.rule)
    if verdict.get("per_check"):
        plot_claim_checks(verdict["per_check"], seeds, run.figures / "checks.png", title=cfg.name)
    statuses = [e["status"] for e in entries]
    return {"status": "finished" if "finished" in statuses else statuses[0],
            "hparams": {"lr": cfg.optimizer.lr, "seeds": seeds},
            "seed_runs": [{"dir": f"seeds/{e['seed']}", "seed": e["seed"], "status": e["status"],
                           "passed": (e.get("verdict") or {}).get("passed")} for e in entries],
            "verdict": verdict}
