"""Task ``ntk_width``: the empirical NTK of NTK-parameterized MLPs at initialization against the analytic
infinite-width NTK, for a list of widths (Jacot, Gabriel, Hongler 2018; Lee et al. 2019).

For each of ``ntk.width.num_seeds`` networks (init seeds ``cfg.seed`` shifted by the network index, so
``seed=S`` gives a fresh set) and each width: ‖K_emp − K_∞‖_F / ‖K_∞‖_F on ``n_inputs`` Gaussian
inputs (the ``data`` stream of ``cfg.seed``). Each network index gives one log-log slope of its error
against width; the claim judges their mean with its standard error (theory: −1/2). One metrics row per
width (``step`` = width index, ``loss`` = ``rel_error`` = the mean over the networks).
"""

import logging

import jax
import numpy as np

from dynamics.claims import judge
from dynamics.config import Config
from dynamics.config_ntk import validate_width
from dynamics.io import RunDir
from dynamics.ntk import NTKMLP, empirical_ntk, infinite_width_kernels
from dynamics.ntk.diagnostics import relative_change
from dynamics.tasks.base import TASK_CHECKS, TASKS
from dynamics.tasks.train import set_precision
from dynamics.train import rng_streams

log = logging.getLogger("dynamics")


def width_errors(cfg: Config) -> np.ndarray:
    """``errors[w, s]``: the relative error of the empirical NTK of network ``s`` at width ``w``."""
    n = cfg.ntk.width
    dtype = set_precision(cfg.precision)
    streams = rng_streams(cfg.seed)
    x = jax.random.normal(streams["data"], (n.n_inputs, n.input_dim), dtype)
    reference = n.w_std if n.reference_w_std is None else n.reference_w_std
    k_inf = infinite_width_kernels(x, depth=n.depth, activation=n.activation, w_std=reference,
                                   b_std=n.b_std).ntk
    errors = np.zeros((len(n.widths), n.num_seeds))
    for index, width in enumerate(n.widths):
        model = NTKMLP((width,) * n.depth, 1, n.activation, n.w_std, n.b_std)

        def apply(p, xs, model=model):
            return model.apply({"params": p}, xs)

        kernel = jax.jit(lambda p, apply=apply: empirical_ntk(apply, p, x, method=n.method,
                                                              trace_axes=(-1,)))
        for s in range(n.num_seeds):
            key = jax.random.fold_in(jax.random.fold_in(streams["init"], index), s)
            params = model.init(key, x[:1])["params"]
            errors[index, s] = relative_change(kernel(params), k_inf)
    return errors


def slopes(widths, errors: np.ndarray) -> np.ndarray:
    """The least-squares log-log slope of each network's error (column of ``errors``) against width."""
    logw = np.log(np.asarray(widths, float))
    return np.array([np.polyfit(logw, np.log(errors[:, s]), 1)[0] for s in range(errors.shape[1])])


def plot_width(rows: list[dict], slope: float, intercept: float, figures, title: str) -> None:
    import matplotlib.pyplot as plt

    figures.mkdir(parents=True, exist_ok=True)
    w = np.array([r["width"] for r in rows], float)
    err = np.array([r["rel_error"] for r in rows], float)
    lo = np.array([r["rel_error_min"] for r in rows], float)
    hi = np.array([r["rel_error_max"] for r in rows], float)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.errorbar(w, err, yerr=[err - lo, hi - err], fmt="o", capsize=3, label="empirical NTK (mean, min–max)")
    ax.plot(w, np.exp(intercept) * w ** slope, "-", lw=1, label=f"fit: slope {slope:.3f}")
    ax.plot(w, err[0] * (w / w[0]) ** -0.5, "k--", lw=0.8, label="slope −1/2")
    ax.set(xscale="log", yscale="log", xlabel="width", ylabel="‖K_emp − K_∞‖_F / ‖K_∞‖_F", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(figures / "ntk_width.png", dpi=120)  # its loss is the relative error: one figure
    plt.close(fig)


@TASK_CHECKS.register("ntk_width")
def check_ntk_width(cfg: Config) -> None:
    validate_width(cfg.ntk.width)


@TASKS.register("ntk_width")
def run_ntk_width(cfg: Config, run: RunDir) -> dict:
    """Empirical NTK error vs width; rows per width, a log-log figure, the slopes' verdict."""
    n = cfg.ntk.width
    errors = width_errors(cfg)
    rows = []
    for index, width in enumerate(n.widths):
        e = errors[index]
        rows.append({"step": index, "loss": float(e.mean()), "width": width,
                     "rel_error": float(e.mean()), "rel_error_std": float(e.std()),
                     "rel_error_min": float(e.min()), "rel_error_max": float(e.max())})
        log.info("width %d: relative NTK error %.4g ± %.2g", width, e.mean(), e.std())
    run.log(rows)
    per_network = slopes(n.widths, errors)
    context = {"slopes": per_network.tolist(), "network_seeds": n.num_seeds,
               "reference_w_std": n.reference_w_std}
    verdict = judge(cfg.claim.name, run.rows, context, cfg.claim.criteria)
    slope = float(per_network.mean())
    intercept = float(np.mean(np.log([r["rel_error"] for r in rows]) - slope * np.log(n.widths)))
    plot_width(rows, slope, intercept, run.figures,
               f"{cfg.name}: depth {n.depth} {n.activation}, {n.n_inputs} inputs, {n.num_seeds} networks")
    return {
        "status": "finished",
        "hparams": {"lr": cfg.optimizer.lr, "seed": cfg.seed, "widths": list(n.widths), "depth": n.depth,
                    "activation": n.activation, "w_std": n.w_std, "b_std": n.b_std,
                    "reference_w_std": n.reference_w_std, "n_inputs": n.n_inputs,
                    "input_dim": n.input_dim, "num_seeds": n.num_seeds, "method": n.method},
        "final": {k: v for k, v in rows[-1].items() if k != "step"},
        "verdict": verdict,
    }
