"""Shared pieces of the implicit-bias tasks (label_noise, label_noise_flow, mirror_descent, kernel_rich,
margin): per-seed PRNG keys, the summary every task writes, and a matplotlib figure handle."""

import logging

import jax
import jax.numpy as jnp
import numpy as np

from dynamics.claims import judge
from dynamics.config import Config
from dynamics.io import RunDir
from dynamics.plots import plot_training
from dynamics.train import rng_streams

log = logging.getLogger("dynamics")


def floats(a) -> list[float]:
    """A flat list of Python floats."""
    return [float(v) for v in np.ravel(np.asarray(a))]


def seed_keys(seed: int, count: int, streams: tuple[str, ...] = ("data", "noise")):
    """Stacked key data of the named streams of seeds ``seed, …, seed + count − 1`` (vmapped seeds)."""
    per_seed = [rng_streams(seed + i) for i in range(count)]
    return tuple(jnp.stack([jax.random.key_data(s[name]) for s in per_seed]) for name in streams)


def finish(cfg: Config, run: RunDir, rows: list[dict], context: dict, hparams: dict, final: dict) -> dict:
    """Log ``rows``, judge the claim on them and ``context``, plot the loss; the task's summary."""
    run.log(rows)
    context = {**context, "min_pass_fraction": cfg.claim.min_pass_fraction, "rule": cfg.claim.rule}
    verdict = judge(cfg.claim.name, run.rows, context, cfg.claim.criteria)
    log.info("%s: judging the claim and drawing its figures", cfg.name)
    # the loss only: curvature columns (label_noise's tr ∇²L) are panels of the claim's own figure
    plot_training(run.rows, run.figures, title=f"{cfg.name}: seed {cfg.seed}", curves=False)
    return {"status": "finished",
            "hparams": {"lr": cfg.optimizer.lr, "seed": cfg.seed, "steps": cfg.train.steps, **hparams},
            "final": {**{k: v for k, v in run.rows[-1].items() if k != "step"}, **final},
            "steps_completed": cfg.train.steps, "verdict": verdict}


def figure(figures, name: str):
    """``(pyplot, path)`` for a figure ``name`` in the run's figures directory (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures.mkdir(parents=True, exist_ok=True)
    return plt, figures / name
