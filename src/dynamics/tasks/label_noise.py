"""Task ``label_noise``: label noise escapes the kernel regime (Li, Wang, Arora 2022; HaoChen et al. 2021).

Full-batch (or minibatch) label-noise GD on x = G(w) (default u⊙u − v⊙v, sparse regression, init
u = v = α) for ``(1 − clean_fraction)·train.steps`` noisy steps at ``optimizer.lr``, then σ = 0 for the rest,
vs plain GD (``gd_lr``, the noisy-phase step count) from the same init. ``num_seeds`` seeds
(``seed + i``: data and noise) vmapped in one run; the claim judges each and states a pass fraction.
Control: ``implicit_bias.label_noise.label_noise_std=0`` (the run is then plain GD and stays dense).
"""

import logging
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from dynamics.config import Config
from dynamics.flows import (diag_map, hessian_trace, init_params, log_steps, loss, min_weighted_l1_interpolant,
                            off_support_mass, relative_error, run_gd, run_label_noise, sparse_regression)
from dynamics.io import RunDir
from dynamics.tasks.base import TASKS
from dynamics.tasks.implicit_bias_common import figure, finish, floats, seed_keys
from dynamics.tasks.train import set_precision

log = logging.getLogger("dynamics")


def _simulate(cfg: Config, dtype, noisy: int, clean: int):
    """Vmapped over seeds: label-noise metrics at the logged steps, GD metrics, and the data."""
    ln_cfg, every, lr = cfg.implicit_bias.label_noise, cfg.train.log_every, cfg.optimizer.lr
    kind, depth = ln_cfg.model, ln_cfg.depth

    @jax.jit
    @partial(jax.vmap, in_axes=(0, 0))
    def one_seed(data_key, noise_key):
        Z, y, w_star = sparse_regression(jax.random.wrap_key_data(data_key), ln_cfg.d, ln_cfg.n,
                                         ln_cfg.sparsity, dtype)
        key = jax.random.wrap_key_data(noise_key)
        w0 = init_params(ln_cfg.d, ln_cfg.alpha, dtype=dtype)
        w, noisy_log = run_label_noise(kind, w0, Z, y, key, lr=lr, sigma=ln_cfg.label_noise_std, steps=noisy,
                                       log_every=every, batch_size=ln_cfg.batch_size, depth=depth)
        _, clean_log = run_label_noise(kind, w, Z, y, key, lr=lr, sigma=0.0, steps=clean, log_every=every,
                                       batch_size=None, depth=depth, start_step=noisy)
        _, gd_log = run_gd(kind, w0, Z, y, lr=ln_cfg.gd_lr, steps=noisy, log_every=every, depth=depth)
        support = w_star != 0

        def metrics(w):
            x = diag_map(kind, w, depth)
            return {"loss": loss(kind, w, Z, y, depth), "rel_err": relative_error(x, w_star),
                    "hessian_trace": hessian_trace(kind, w, Z, y, depth),
                    "off_support": off_support_mass(w, support)}

        ws = jnp.concatenate([noisy_log, clean_log[1:]])
        return jax.vmap(metrics)(ws), jax.vmap(metrics)(gd_log), Z, y, w_star

    return jax.device_get(one_seed(*seed_keys(cfg.seed, ln_cfg.num_seeds)))


def _rows(ln, gd, ln_steps, gd_steps, noisy) -> list[dict]:
    gd_index = {s: i for i, s in enumerate(gd_steps)}
    rows = []
    for i, s in enumerate(ln_steps):
        row = {"step": s, "loss": float(ln["loss"][:, i].mean()), "rel_err": float(ln["rel_err"][:, i].mean()),
               "rel_err_max": float(ln["rel_err"][:, i].max()),
               "hessian_trace": float(ln["hessian_trace"][:, i].mean()),
               "off_support": float(ln["off_support"][:, i].mean()), "noisy": s < noisy}
        if s in gd_index:
            j = gd_index[s]
            row.update(gd_loss=float(gd["loss"][:, j].mean()), gd_rel_err=float(gd["rel_err"][:, j].mean()))
        rows.append(row)
    return rows


@TASKS.register("label_noise")
def run_label_noise_task(cfg: Config, run: RunDir) -> dict:
    """Label-noise GD then clean GD vs plain GD on a sparse regression; ``num_seeds`` vmapped seeds."""
    ln_cfg = cfg.implicit_bias.label_noise
    dtype = set_precision(cfg.precision)
    steps, every = cfg.train.steps, cfg.train.log_every
    clean = int(round(ln_cfg.clean_fraction * steps))
    noisy = steps - clean
    ln, gd, Z, y, w_star = _simulate(cfg, dtype, noisy, clean)
    ln_steps = log_steps(noisy, every) + [noisy + s for s in log_steps(clean, every)[1:]]
    gd_steps = log_steps(noisy, every)
    rows = _rows(ln, gd, ln_steps, gd_steps, noisy)
    # precondition: weighted-ℓ1-min interpolation (the limit flow's target) recovers w* on each seed
    l1 = [float(np.linalg.norm(min_weighted_l1_interpolant(Z[s], y[s], (Z[s] ** 2).sum(0)) - w_star[s])
                / np.linalg.norm(w_star[s])) for s in range(ln_cfg.num_seeds)]
    seeds = list(range(cfg.seed, cfg.seed + ln_cfg.num_seeds))
    ln_final, gd_final = floats(ln["rel_err"][:, -1]), floats(gd["rel_err"][:, -1])
    context = {"seeds": seeds, "num_seeds": ln_cfg.num_seeds, "ln_rel_err": ln_final, "gd_rel_err": gd_final,
               "l1_rel_err": l1}
    for s, a, b in zip(seeds, ln_final, gd_final):
        log.info("seed %d: label-noise rel err %.4g, GD rel err %.4g", s, a, b)
    sigma = ln_cfg.label_noise_std
    summary = finish(cfg, run, rows, context,
                     {"sigma": sigma, "c": sigma ** 2 / (ln_cfg.batch_size or ln_cfg.n), "gd_lr": ln_cfg.gd_lr,
                      "noisy_steps": noisy, "clean_steps": clean, "batch_size": ln_cfg.batch_size,
                      "alpha": ln_cfg.alpha, "d": ln_cfg.d, "n": ln_cfg.n, "sparsity": ln_cfg.sparsity,
                      "model": ln_cfg.model, "seeds": seeds},
                     {"ln_rel_err_per_seed": ln_final, "gd_rel_err_per_seed": gd_final})
    _plot(run, ln_steps, ln, gd, noisy, gd_steps, cfg.name)
    return summary


def _plot(run, steps, ln, gd, noisy, gd_steps, title):
    plt, path = figure(run.figures, "label_noise.png")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for s in range(ln["rel_err"].shape[0]):
        axes[0].plot(steps, ln["rel_err"][s], color="C0", lw=0.8, label="label noise" if s == 0 else None)
        axes[0].plot(gd_steps, gd["rel_err"][s], color="C3", lw=0.8, label="GD" if s == 0 else None)
        axes[1].plot(steps, ln["hessian_trace"][s], color="C0", lw=0.8)
    for ax in axes:
        ax.axvline(noisy, color="k", ls=":", lw=0.8, label="σ → 0")
        ax.set(xlabel="step", yscale="log")
    axes[0].set(ylabel="‖x − w*‖/‖w*‖", title=title)
    axes[1].set(ylabel="tr ∇²L (exact)", title="label noise decreases tr ∇²L on the manifold")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
