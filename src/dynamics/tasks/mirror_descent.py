"""Task ``mirror_descent``: GD on a commuting parametrization is mirror descent (Li, Wang, Lee, Arora 2022).

GD in w vs dual mirror descent in x for u⊙u − v⊙v, u⊙v and u³ − v³ (η = ``optimizer.lr``, then η/2, …, with
``train.steps`` steps at η, T = η·steps) and for X = UUᵀ matrix sensing on its own, smaller η ladder
(``matrix_lr``, T = ``matrix_time``: at η = 1e-2 the O(η) regime is not reached on every seed). The matrix
measurements commute (``matrix_commuting``); a generic-measurement run is the in-run control whose gap does
not shrink. Lie brackets via ``jax.jvp``. One seed per run (data: ``seed``'s streams).
Control: ``implicit_bias.mirror_descent.matrix_commuting=false``.
"""

import logging
from functools import partial

import jax
import numpy as np

from dynamics.config import Config
from dynamics.flows import MirrorModel, gd_vs_mirror, log_steps, matrix_gd_vs_mirror, matrix_sensing, max_lie_bracket
from dynamics.io import RunDir
from dynamics.tasks.base import TASKS
from dynamics.tasks.implicit_bias_common import figure, finish
from dynamics.tasks.train import set_precision
from dynamics.train import rng_streams

log = logging.getLogger("dynamics")


def _problem(key, d, n, dtype):
    """Z ~ N(0, 1/n), x* = (1, −0.5, 0.8, 0, ...), y = Zx*."""
    Z = jax.random.normal(key, (n, d), dtype) / np.sqrt(n)
    x_star = np.zeros(d)
    x_star[:3] = [1.0, -0.5, 0.8][: min(3, d)]
    return Z, Z @ jax.numpy.asarray(x_star, dtype)


def _diagonal_gaps(cfg: Config, Z, y, scales):
    m, steps, every, lr = cfg.implicit_bias.mirror_descent, cfg.train.steps, cfg.train.log_every, cfg.optimizer.lr
    models = {"uu_minus_vv": MirrorModel("uu_minus_vv", m.alpha, m.alpha), "uv": MirrorModel("uv", *m.uv_init),
              "power3": MirrorModel("power", m.power_alpha, m.power_alpha, 3)}
    gaps, curves, losses = {}, {}, None
    for name, model in models.items():
        compare = jax.jit(partial(gd_vs_mirror, model, steps=steps, log_every=every))
        gaps[name] = []
        for k in scales:
            x_gd, x_md = compare(Z, y, lr=lr / k, substeps=k)
            gap = np.linalg.norm(np.asarray(x_gd - x_md), axis=1)
            gaps[name].append(float(gap.max()))
            if k == 1:
                curves[name] = gap
                if losses is None:
                    losses = 0.5 * np.sum((np.asarray(x_gd) @ np.asarray(Z).T - np.asarray(y)) ** 2, axis=1)
        log.info("%s: max gap %s", name, ", ".join(f"{g:.3g}" for g in gaps[name]))
    return gaps, curves, losses


def _matrix_gaps(cfg: Config, key, dtype, scales):
    m = cfg.implicit_bias.mirror_descent
    steps = max(1, int(round(m.matrix_time / m.matrix_lr)))
    compare = jax.jit(partial(matrix_gd_vs_mirror, steps=steps, log_every=min(m.matrix_log_every, steps)))
    gaps = {}
    for name, commuting in (("matrix", m.matrix_commuting), ("matrix_generic", False)):
        A, b, _ = matrix_sensing(key, m.matrix_dim, m.num_measurements, commuting, dtype)
        gaps[name] = []
        for k in scales:
            X_gd, X_md = compare(A, b, m.matrix_alpha, lr=m.matrix_lr / k, substeps=k)
            gaps[name].append(float(np.linalg.norm(np.asarray(X_gd - X_md), axis=(1, 2)).max()))
        log.info("%s: max gap %s", name, ", ".join(f"{g:.3g}" for g in gaps[name]))
    return gaps


def _lie_brackets(key, dtype) -> dict:
    """Max Lie bracket at a random point: 0 for the diagonal models, not for UUᵀ and W₂W₁ (2×2)."""
    w = jax.random.normal(key, (8,), dtype) + 1.0
    brackets = {"uu_minus_vv": MirrorModel("uu_minus_vv", 1.0, 1.0).G, "uv": MirrorModel("uv", 1.0, 1.0).G,
                "power3": MirrorModel("power", 1.0, 1.0, 3).G,
                "UUt": lambda p: (p[:4].reshape(2, 2) @ p[:4].reshape(2, 2).T).ravel(),
                "W2W1": lambda p: (p[4:].reshape(2, 2) @ p[:4].reshape(2, 2)).ravel()}
    return {name: float(jax.jit(partial(max_lie_bracket, G))(w)) for name, G in brackets.items()}


@TASKS.register("mirror_descent")
def run_mirror_descent_task(cfg: Config, run: RunDir) -> dict:
    """GD in w vs mirror descent in x = G(w): gap(η)/gap(η/2) ≈ 2 iff G commutes."""
    m, steps, lr = cfg.implicit_bias.mirror_descent, cfg.train.steps, cfg.optimizer.lr
    dtype = set_precision(cfg.precision)
    streams = rng_streams(cfg.seed)
    scales = [2 ** k for k in range(m.lr_halvings + 1)]
    Z, y = _problem(streams["data"], m.d, m.n, dtype)
    gaps, curves, losses = _diagonal_gaps(cfg, Z, y, scales)
    gaps.update(_matrix_gaps(cfg, streams["probe"], dtype, scales))
    lie = _lie_brackets(streams["init"], dtype)
    logged = log_steps(steps, cfg.train.log_every)
    rows = [{"step": s, "t": s * lr, "loss": float(losses[i]), **{f"gap_{k}": float(v[i]) for k, v in curves.items()}}
            for i, s in enumerate(logged)]
    commuting = ["uu_minus_vv", "uv", "power3", "matrix"]
    context = {"lrs": [lr / k for k in scales], "matrix_lrs": [m.matrix_lr / k for k in scales], "gaps": gaps,
               "commuting": commuting, "control": ["matrix_generic"], "lie_brackets": lie,
               "lie_commuting": ["uu_minus_vv", "uv", "power3"], "lie_noncommuting": ["UUt", "W2W1"]}
    summary = finish(cfg, run, rows, context,
                     {"lrs": context["lrs"], "matrix_lrs": context["matrix_lrs"], "T": steps * lr,
                      "matrix_T": m.matrix_time, "matrix_commuting": m.matrix_commuting, "alpha": m.alpha,
                      "uv_init": list(m.uv_init), "power_alpha": m.power_alpha, "d": m.d, "n": m.n},
                     {"gaps": gaps, "lie_brackets": lie})
    _plot(run, gaps, scales, cfg.name)
    return summary


def _plot(run, gaps, scales, title):
    plt, path = figure(run.figures, "mirror_descent.png")
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for i, (name, g) in enumerate(gaps.items()):
        ax.plot(np.arange(len(g)), g, "o-" if name != "matrix_generic" else "s--", color=f"C{i}", label=name)
    ax.set(xticks=range(len(scales)), xticklabels=[f"η/{k}" for k in scales], yscale="log",
           ylabel="max_t ‖x_GD(t) − x_MD(t)‖", title=f"{title}: gap halves with η iff G commutes")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
