"""Task ``margin``: margin maximization of two-layer Leaky-ReLU nets (Lyu, Li, Wang, Arora, NeurIPS 2021).

GD (``optimizer.lr``, ``train.steps``) on the mean logistic loss of a bias-free two-layer Leaky-ReLU net on
symmetric linearly separable data, from ``init_scale`` (small) and from ``contrast_init_scale`` (the large-init
contrast of the same run): normalized margin vs the optimum (1 + α_leak)/4·γ_SVM, alignment with the SVM
direction, linearity. ``num_seeds`` seeds (``seed + i``: data and init) vmapped in one run.
Control: ``implicit_bias.margin.init_scale=1.0``.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from dynamics.config import Config
from dynamics.flows import (effective_linear, init_two_layer, linearity, log_steps, logistic_loss,
                            normalized_margin, optimal_margin, svm_direction, symmetric_separable_data,
                            train_two_layer)
from dynamics.io import RunDir
from dynamics.scan import log_spaced_steps
from dynamics.tasks.base import TASKS
from dynamics.tasks.implicit_bias_common import figure, finish, floats, seed_keys
from dynamics.tasks.train import set_precision


def logged_steps(cfg: Config) -> list[int]:
    """Every ``train.log_every``-th step and 10 log-spaced steps per decade (the figure's time axis is
    logarithmic, so the early decades need rows too)."""
    return sorted(set(log_steps(cfg.train.steps, cfg.train.log_every))
                  | set(log_spaced_steps(cfg.train.steps, 10)))


def _trainer(cfg: Config, dtype):
    m, steps, lr = cfg.implicit_bias.margin, cfg.train.steps, cfg.optimizer.lr

    @jax.jit
    @partial(jax.vmap, in_axes=(0, 0, None))
    def one(data_key, init_key, scale):
        X, y = symmetric_separable_data(jax.random.wrap_key_data(data_key), m.n, m.d, dtype)
        p0 = jax.tree.map(lambda a: scale * a, init_two_layer(jax.random.wrap_key_data(init_key), m.d, m.width,
                                                               1.0, dtype))
        p, logs = train_two_layer(p0, X, y, m.leak, lr=lr, steps=steps, save_steps=logged_steps(cfg))
        per = jax.vmap(lambda q: (logistic_loss(q, X, y, m.leak), normalized_margin(q, X, y, m.leak),
                                  linearity(q, X, m.leak)))(logs)
        return X, y, effective_linear(p), per

    return one


@TASKS.register("margin")
def run_margin_task(cfg: Config, run: RunDir) -> dict:
    """GD on a two-layer Leaky-ReLU net (small init and a large-init contrast) on symmetric data."""
    m = cfg.implicit_bias.margin
    dtype = set_precision(cfg.precision)
    one = _trainer(cfg, dtype)
    data_keys, init_keys = seed_keys(cfg.seed, m.num_seeds, ("data", "init"))
    X, y, beta, (lo, q, lin) = jax.device_get(one(data_keys, init_keys, m.init_scale))
    _, _, _, (lo_c, q_c, lin_c) = jax.device_get(one(data_keys, init_keys, m.contrast_init_scale))
    q_star, cos = [], []
    for s in range(m.num_seeds):
        w_hat, gamma = svm_direction(X[s], y[s])
        q_star.append(optimal_margin(gamma, m.leak))
        cos.append(float(beta[s] @ w_hat / np.linalg.norm(beta[s])))
    q_star = np.asarray(q_star)[:, None]
    ratio, ratio_c = q / q_star, q_c / q_star
    logged = logged_steps(cfg)
    rows = [{"step": s, "loss": float(lo[:, i].mean()), "ratio": float(ratio[:, i].mean()),
             "ratio_min": float(ratio[:, i].min()), "linearity": float(lin[:, i].max()),
             "contrast_loss": float(lo_c[:, i].mean()), "contrast_ratio": float(ratio_c[:, i].mean()),
             "contrast_linearity": float(lin_c[:, i].min())} for i, s in enumerate(logged)]
    seeds = list(range(cfg.seed, cfg.seed + m.num_seeds))
    context = {"seeds": seeds, "num_seeds": m.num_seeds, "ratio": floats(ratio[:, -1]), "cos": cos,
               "linearity": floats(lin[:, -1]), "contrast_ratio": floats(ratio_c[:, -1]),
               "contrast_linearity": floats(lin_c[:, -1]), "q_star": floats(q_star)}
    summary = finish(cfg, run, rows, context,
                     {"width": m.width, "leak": m.leak, "init_scale": m.init_scale,
                      "contrast_init_scale": m.contrast_init_scale, "d": m.d, "n_base": m.n, "seeds": seeds},
                     {k: v for k, v in context.items() if k not in ("seeds", "num_seeds")})
    _plot(run, logged, ratio, ratio_c, lin, lin_c, m, cfg.name)
    return summary


def _plot(run, logged, ratio, ratio_c, lin, lin_c, m, title):
    plt, path = figure(run.figures, "margin.png")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    x = np.maximum(np.asarray(logged), 1)
    for s in range(ratio.shape[0]):
        axes[0].plot(x, ratio[s], color="C0", lw=1, label=f"init {m.init_scale:g}" if s == 0 else None)
        axes[0].plot(x, ratio_c[s], color="C3", lw=1, label=f"init {m.contrast_init_scale:g}" if s == 0 else None)
        axes[1].plot(x, lin[s], color="C0", lw=1)
        axes[1].plot(x, lin_c[s], color="C3", lw=1)
    axes[0].axhline(1.0, color="k", ls="--", lw=0.8, label="q* = (1+α)/4·γ_SVM")
    axes[0].set(xscale="log", xlabel="step", ylabel="q(θ)/q*", title=title)
    axes[0].legend(fontsize=8)
    axes[1].set(xscale="log", yscale="log", xlabel="step", ylabel="‖f − (1+α)/2·Xβ‖/‖f‖ (linearity)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
