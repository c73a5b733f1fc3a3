"""Implicit-bias tasks: which minimum an optimizer finds (theory and formulas: ``dynamics.flows``).

- ``label_noise``: full-batch (or minibatch) label-noise GD on x = u⊙u − v⊙v (sparse regression, init
  u = v = α) for ``(1 − clean_fraction)·train.steps`` noisy steps, then σ = 0 for the rest, vs plain GD
  (``implicit_bias.gd_lr``) from the same init; ``num_seeds`` data seeds in one vmapped run. Label noise
  recovers the sparse w*; GD from the kernel regime does not.
- ``label_noise_flow``: the average of ``num_runs`` label-noise runs vs the limiting flow
  dw/dt = −(c/4)·P_T∇tr∇²L, c = σ²/B, at matched times t = η²·step, started at Φ(w₀); and a control flow
  with the wrong constant.
- ``mirror_descent``: GD in w vs dual mirror descent in x for u⊙u − v⊙v, u⊙v, u³ − v³ (commuting: gap
  O(η)) and for X = UUᵀ with commuting and generic measurements (generic: gap does not shrink); Lie brackets.
- ``kernel_rich``: GD from α ∈ ``alphas`` vs argmin Q_α (Woodworth et al.): ℓ1-like to ℓ2-like.
- ``margin``: GD on a two-layer Leaky-ReLU net from small init: normalized margin vs (1 + α_leak)/4·γ_SVM,
  linearity; a large-init contrast.

Each writes metrics rows at steps 0, ``train.log_every``, ..., ``train.steps`` with ``loss``, a verdict,
``figures/loss.png`` and one figure of its claim.
"""

import logging
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from dynamics.config import Config
from dynamics.errors import check
from dynamics.flows import (
    KINDS,
    MirrorModel,
    argmin_woodworth,
    diag_map,
    effective_linear,
    gd_vs_mirror,
    gradient_flow_limit,
    hessian_trace,
    init_params,
    init_two_layer,
    label_noise_flow,
    linearity,
    log_steps,
    logistic_loss,
    loss,
    matrix_gd_vs_mirror,
    matrix_sensing,
    max_lie_bracket,
    min_l2_interpolant,
    min_weighted_l1_interpolant,
    normalized_margin,
    off_support_mass,
    optimal_margin,
    relative_error,
    run_gd,
    run_label_noise,
    sparse_regression,
    svm_direction,
    symmetric_separable_data,
    train_two_layer,
)
from dynamics.io import RunDir
from dynamics.plots import plot_training
from dynamics.tasks.base import TASKS
from dynamics.tasks.train import set_precision
from dynamics.train import rng_streams
from dynamics.claims import judge

log = logging.getLogger("dynamics")


def _floats(a) -> list[float]:
    return [float(v) for v in np.ravel(np.asarray(a))]


def _finish(cfg: Config, run: RunDir, rows: list[dict], context: dict, hparams: dict, final: dict) -> dict:
    run.log(rows)
    verdict = judge(cfg.claim.name, run.rows, context, cfg.claim.criteria)
    plot_training(run.rows, run.figures, title=cfg.name)
    return {"status": "finished",
            "hparams": {"lr": cfg.optimizer.lr, "seed": cfg.seed, "steps": cfg.train.steps, **hparams},
            "final": {**{k: v for k, v in run.rows[-1].items() if k != "step"}, **final},
            "steps_completed": cfg.train.steps, "verdict": verdict}


def _validate_regression(cfg: Config) -> None:
    ib = cfg.implicit_bias
    check(ib.d >= 1, "implicit_bias.d", ib.d, "an integer >= 1")
    check(1 <= ib.n, "implicit_bias.n", ib.n, "an integer >= 1")
    check(1 <= ib.sparsity <= ib.d, "implicit_bias.sparsity", ib.sparsity, f"an integer in [1, d={ib.d}]")
    check(ib.alpha > 0, "implicit_bias.alpha", ib.alpha, "a float > 0")
    check(ib.model in KINDS, "implicit_bias.model", ib.model, " | ".join(KINDS))
    check(ib.depth >= 2, "implicit_bias.depth", ib.depth, "an integer >= 2")
    check(ib.label_noise_std >= 0, "implicit_bias.label_noise_std", ib.label_noise_std, "a float >= 0")
    check(ib.batch_size is None or 1 <= ib.batch_size <= ib.n, "implicit_bias.batch_size", ib.batch_size,
          f"null (full batch) or an integer in [1, n={ib.n}]")


def _seed_keys(seed: int, count: int):
    """Per seed: (data key, noise key) from the seed's named streams."""
    streams = [rng_streams(seed + i) for i in range(count)]
    return (jnp.stack([jax.random.key_data(s["data"]) for s in streams]),
            jnp.stack([jax.random.key_data(s["noise"]) for s in streams]))


def _fig(figures, name: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures.mkdir(parents=True, exist_ok=True)
    return plt, figures / name


# ------------------------------------------------------------------------------------ label_noise

@TASKS.register("label_noise")
def run_label_noise_task(cfg: Config, run: RunDir) -> dict:
    """Label-noise GD then clean GD vs plain GD on a sparse regression; ``num_seeds`` seeds."""
    ib = cfg.implicit_bias
    _validate_regression(cfg)
    check(0 <= ib.clean_fraction < 1, "implicit_bias.clean_fraction", ib.clean_fraction, "a float in [0, 1)")
    check(ib.gd_lr > 0, "implicit_bias.gd_lr", ib.gd_lr, "a float > 0")
    check(ib.num_seeds >= 1, "implicit_bias.num_seeds", ib.num_seeds, "an integer >= 1")
    dtype = set_precision(cfg.precision)
    steps, every = cfg.train.steps, cfg.train.log_every
    clean = int(round(ib.clean_fraction * steps))
    noisy = steps - clean
    kind, depth, lr, sigma = ib.model, ib.depth, cfg.optimizer.lr, ib.label_noise_std

    @jax.jit
    @partial(jax.vmap, in_axes=(0, 0))
    def one_seed(data_key, noise_key):
        Z, y, w_star = sparse_regression(jax.random.wrap_key_data(data_key), ib.d, ib.n, ib.sparsity, dtype)
        key = jax.random.wrap_key_data(noise_key)
        w0 = init_params(ib.d, ib.alpha, dtype=dtype)
        w, noisy_log = run_label_noise(kind, w0, Z, y, key, lr=lr, sigma=sigma, steps=noisy, log_every=every,
                                       batch_size=ib.batch_size, depth=depth)
        _, clean_log = run_label_noise(kind, w, Z, y, key, lr=lr, sigma=0.0, steps=clean, log_every=every,
                                       batch_size=None, depth=depth, start_step=noisy)
        _, gd_log = run_gd(kind, w0, Z, y, lr=ib.gd_lr, steps=noisy, log_every=every, depth=depth)
        ws = jnp.concatenate([noisy_log, clean_log[1:]])
        support = w_star != 0

        def metrics(w):
            x = diag_map(kind, w, depth)
            return {"loss": loss(kind, w, Z, y, depth), "rel_err": relative_error(x, w_star),
                    "hessian_trace": hessian_trace(kind, w, Z, y, depth),
                    "off_support": off_support_mass(w, support)}

        gd = jax.vmap(metrics)(gd_log)
        return jax.vmap(metrics)(ws), {"gd_loss": gd["loss"], "gd_rel_err": gd["rel_err"]}, Z, y

    data_keys, noise_keys = _seed_keys(cfg.seed, ib.num_seeds)
    ln, gd, Z, y = jax.device_get(one_seed(data_keys, noise_keys))
    ln_steps = log_steps(noisy, every) + [noisy + s for s in log_steps(clean, every)[1:]]
    gd_index = {s: i for i, s in enumerate(log_steps(noisy, every))}
    rows = []
    for i, s in enumerate(ln_steps):
        row = {"step": s, "loss": float(ln["loss"][:, i].mean()), "rel_err": float(ln["rel_err"][:, i].mean()),
               "rel_err_max": float(ln["rel_err"][:, i].max()),
               "hessian_trace": float(ln["hessian_trace"][:, i].mean()),
               "off_support": float(ln["off_support"][:, i].mean()), "noisy": s < noisy}
        if s in gd_index:
            j = gd_index[s]
            row.update(gd_loss=float(gd["gd_loss"][:, j].mean()), gd_rel_err=float(gd["gd_rel_err"][:, j].mean()))
        rows.append(row)
    # precondition: weighted-l1-min interpolation (the flow's target) recovers w* on each seed
    l1 = []
    for s in range(ib.num_seeds):
        w_star = np.zeros(ib.d)
        w_star[:ib.sparsity] = 1.0
        x1 = min_weighted_l1_interpolant(Z[s], y[s], (Z[s] ** 2).sum(0))
        l1.append(float(np.linalg.norm(x1 - w_star) / np.linalg.norm(w_star)))
    ln_final = _floats(ln["rel_err"][:, -1])
    gd_final = _floats(gd["gd_rel_err"][:, -1])
    context = {"seeds": list(range(cfg.seed, cfg.seed + ib.num_seeds)), "ln_rel_err": ln_final,
               "gd_rel_err": gd_final, "l1_rel_err": l1}
    for s, a, b in zip(context["seeds"], ln_final, gd_final):
        log.info("seed %d: label-noise rel err %.4g, GD rel err %.4g", s, a, b)
    summary = _finish(cfg, run, rows, context,
                      {"sigma": sigma, "c": sigma ** 2 / (ib.batch_size or ib.n), "gd_lr": ib.gd_lr,
                       "noisy_steps": noisy, "clean_steps": clean, "batch_size": ib.batch_size,
                       "alpha": ib.alpha, "d": ib.d, "n": ib.n, "sparsity": ib.sparsity, "model": kind},
                      {"ln_rel_err_per_seed": ln_final, "gd_rel_err_per_seed": gd_final})
    _plot_label_noise(run, ln_steps, ln, gd, noisy, gd_index, cfg.name)
    return summary


def _plot_label_noise(run, steps, ln, gd, noisy, gd_index, title):
    plt, path = _fig(run.figures, "label_noise.png")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    gd_steps = sorted(gd_index)
    for s in range(ln["rel_err"].shape[0]):
        axes[0].plot(steps, ln["rel_err"][s], color="C0", lw=0.8, label="label noise" if s == 0 else None)
        axes[0].plot(gd_steps, gd["gd_rel_err"][s], color="C3", lw=0.8, label="GD" if s == 0 else None)
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


# ------------------------------------------------------------------------------- label_noise_flow

@TASKS.register("label_noise_flow")
def run_label_noise_flow_task(cfg: Config, run: RunDir) -> dict:
    """Average of label-noise runs vs the limiting flow −(c/4)P_T∇tr∇²L at matched times t = η²·step."""
    ib = cfg.implicit_bias
    _validate_regression(cfg)
    check(ib.num_runs >= 1, "implicit_bias.num_runs", ib.num_runs, "an integer >= 1")
    check(ib.flow_dt > 0, "implicit_bias.flow_dt", ib.flow_dt, "a float > 0")
    check(ib.phi_steps >= 0, "implicit_bias.phi_steps", ib.phi_steps, "an integer >= 0")
    check(all(0 < f <= 1 for f in ib.check_fractions) and ib.check_fractions, "implicit_bias.check_fractions",
          ib.check_fractions, "a non-empty list of floats in (0, 1]")
    dtype = set_precision(cfg.precision)
    steps, every = cfg.train.steps, min(cfg.train.log_every, cfg.train.steps)
    kind, depth, lr, sigma = ib.model, ib.depth, cfg.optimizer.lr, ib.label_noise_std
    c = sigma ** 2 / (ib.batch_size or ib.n)
    chunks, rem = divmod(steps, every)
    sub = max(1, int(np.ceil(every * lr ** 2 / ib.flow_dt)))  # Euler steps per logged interval
    sub_rem = max(1, int(np.ceil(rem * lr ** 2 / ib.flow_dt))) if rem else 0

    def predict(w, Z):
        return Z @ diag_map(kind, w, depth)

    def trace(w, Z, y):
        return hessian_trace(kind, w, Z, y, depth)

    def flow(w0, Z, y, constant):
        _, logs = label_noise_flow(predict, trace, w0, Z, y, c=c, dt=every * lr ** 2 / sub, steps=chunks * sub,
                                   log_every=sub, constant=constant)
        if rem:
            _, tail = label_noise_flow(predict, trace, logs[-1], Z, y, c=c, dt=rem * lr ** 2 / sub_rem,
                                       steps=sub_rem, log_every=sub_rem, constant=constant)
            logs = jnp.concatenate([logs, tail[1:]])
        return logs

    @jax.jit
    def go(data_key, noise_key):
        Z, y, w_star = sparse_regression(data_key, ib.d, ib.n, ib.sparsity, dtype)
        w0 = init_params(ib.d, ib.alpha, dtype=dtype)
        runs = jax.vmap(lambda k: run_label_noise(kind, w0, Z, y, k, lr=lr, sigma=sigma, steps=steps,
                                                  log_every=every, batch_size=ib.batch_size, depth=depth)[1])(
            jax.random.split(noise_key, ib.num_runs))
        phi = gradient_flow_limit(predict, w0, Z, y, lr=lr, steps=ib.phi_steps)
        x_flow = jax.vmap(lambda w: diag_map(kind, w, depth))(flow(phi, Z, y, ib.flow_constant))
        x_ctrl = jax.vmap(lambda w: diag_map(kind, w, depth))(flow(phi, Z, y, ib.control_constant))
        x_runs = jax.vmap(jax.vmap(lambda w: diag_map(kind, w, depth)))(runs)
        x_mean = x_runs.mean(0)
        return {"loss": jax.vmap(jax.vmap(lambda w: loss(kind, w, Z, y, depth)))(runs).mean(0),
                "hessian_trace": jax.vmap(jax.vmap(lambda w: trace(w, Z, y)))(runs).mean(0),
                "rel_err": jax.vmap(lambda x: relative_error(x, w_star))(x_mean),
                "flow_rel_err": jax.vmap(lambda x: relative_error(x, w_star))(x_flow),
                "distance": jnp.linalg.norm(x_mean - x_flow, axis=1),
                "control_distance": jnp.linalg.norm(x_mean - x_ctrl, axis=1),
                "flow_displacement": jnp.linalg.norm(x_flow - x_flow[0], axis=1),
                "flow_trace": jax.vmap(lambda w: trace(w, Z, y))(phi[None])[0],
                "phi_residual": jnp.linalg.norm(predict(phi, Z) - y)}, x_mean, x_flow, x_ctrl

    streams = rng_streams(cfg.seed)
    out, x_mean, x_flow, x_ctrl = jax.device_get(go(streams["data"], streams["noise"]))
    logged = log_steps(steps, every)
    rows = []
    for i, s in enumerate(logged):
        disp = float(out["flow_displacement"][i])
        rows.append({"step": s, "t": s * lr ** 2, "loss": float(out["loss"][i]),
                     "hessian_trace": float(out["hessian_trace"][i]), "rel_err": float(out["rel_err"][i]),
                     "flow_rel_err": float(out["flow_rel_err"][i]), "distance": float(out["distance"][i]),
                     "control_distance": float(out["control_distance"][i]), "flow_displacement": disp,
                     "ratio": float(out["distance"][i]) / disp if disp > 0 else float("nan"),
                     "control_ratio": float(out["control_distance"][i]) / disp if disp > 0 else float("nan")})
    check_steps = sorted({min(logged, key=lambda s: abs(s - f * steps)) for f in ib.check_fractions})
    context = {"check_steps": check_steps, "c": c, "flow_constant": ib.flow_constant,
               "control_constant": ib.control_constant}
    summary = _finish(cfg, run, rows, context,
                      {"sigma": sigma, "c": c, "num_runs": ib.num_runs, "flow_dt_max": ib.flow_dt,
                       "flow_constant": ib.flow_constant, "control_constant": ib.control_constant,
                       "alpha": ib.alpha, "d": ib.d, "n": ib.n, "sparsity": ib.sparsity, "model": kind},
                      {"phi_residual": float(out["phi_residual"])})
    _plot_flow(run, rows, x_mean, x_flow, x_ctrl, check_steps, lr, context, cfg.name)
    return summary


def _plot_flow(run, rows, x_mean, x_flow, x_ctrl, check_steps, lr, context, title):
    plt, path = _fig(run.figures, "label_noise_flow.png")
    t = np.array([r["t"] for r in rows])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    top = np.argsort(-np.abs(x_flow[-1]))[:4]
    for k, j in enumerate(top):
        axes[0].plot(t, x_mean[:, j], color=f"C{k}", lw=1.2, label=f"x_{j} label noise (mean)" if k == 0 else None)
        axes[0].plot(t, x_flow[:, j], color=f"C{k}", ls="--", lw=1, label="flow c/4" if k == 0 else None)
        axes[0].plot(t, x_ctrl[:, j], color=f"C{k}", ls=":", lw=1,
                     label=f"control ({context['control_constant']:g}·c)" if k == 0 else None)
    axes[0].set(xlabel="t = η²·step", ylabel="coordinates of x (largest 4)", title=title)
    axes[0].legend(fontsize=8)
    axes[1].plot(t, [r["distance"] for r in rows], label="‖x̄_LN − x_flow‖")
    axes[1].plot(t, [r["control_distance"] for r in rows], label="‖x̄_LN − x_control‖")
    axes[1].plot(t, [0.15 * r["flow_displacement"] for r in rows], "k--", lw=0.8, label="0.15 × flow displacement")
    for s in check_steps:
        axes[1].axvline(s * lr ** 2, color="gray", ls=":", lw=0.8)
    axes[1].set(xlabel="t = η²·step", ylabel="distance in x")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------------- mirror_descent

def _mirror_problem(key, d, n, dtype):
    """Z ~ N(0, 1/n), x* = (1, −0.5, 0.8, 0, ...), y = Zx*."""
    Z = jax.random.normal(key, (n, d), dtype) / np.sqrt(n)
    x_star = jnp.zeros((d,), dtype).at[:3].set(jnp.array([1.0, -0.5, 0.8], dtype)[: min(3, d)])
    return Z, Z @ x_star


@TASKS.register("mirror_descent")
def run_mirror_descent_task(cfg: Config, run: RunDir) -> dict:
    """GD in w vs mirror descent in x = G(w): gap(η)/gap(η/2) ≈ 2 iff G commutes."""
    ib = cfg.implicit_bias
    check(ib.d >= 1 and ib.n >= 1, "implicit_bias.d", ib.d, "d >= 1 and n >= 1")
    check(ib.alpha > 0, "implicit_bias.alpha", ib.alpha, "a float > 0")
    check(len(ib.uv_init) == 2 and ib.uv_init[0] > 0 and ib.uv_init[1] > 0, "implicit_bias.uv_init",
          ib.uv_init, "[u0, v0] with u0, v0 > 0")
    check(ib.power_alpha > 0, "implicit_bias.power_alpha", ib.power_alpha, "a float > 0")
    check(ib.lr_halvings >= 1, "implicit_bias.lr_halvings", ib.lr_halvings, "an integer >= 1")
    check(ib.control_lr > 0, "implicit_bias.control_lr", ib.control_lr, "a float > 0")
    check(ib.matrix_dim >= 2, "implicit_bias.matrix_dim", ib.matrix_dim, "an integer >= 2")
    dtype = set_precision(cfg.precision)
    steps, every, lr = cfg.train.steps, cfg.train.log_every, cfg.optimizer.lr
    streams = rng_streams(cfg.seed)
    Z, y = _mirror_problem(streams["data"], ib.d, ib.n, dtype)
    models = {"uu_minus_vv": MirrorModel("uu_minus_vv", ib.alpha, ib.alpha),
              "uv": MirrorModel("uv", *ib.uv_init),
              "power3": MirrorModel("power", ib.power_alpha, ib.power_alpha, 3)}
    scales = [2 ** k for k in range(ib.lr_halvings + 1)]
    gaps, curves, losses = {}, {}, None
    for name, model in models.items():
        gaps[name] = []
        compare = jax.jit(partial(gd_vs_mirror, model, steps=steps, log_every=every))
        for k in scales:
            x_gd, x_md = compare(Z, y, lr=lr / k, substeps=k)
            gap = np.linalg.norm(np.asarray(x_gd - x_md), axis=1)
            gaps[name].append(float(gap.max()))
            if k == 1:
                curves[name] = gap
                if losses is None:
                    losses = 0.5 * np.sum((np.asarray(x_gd) @ np.asarray(Z).T - np.asarray(y)) ** 2, axis=1)
        log.info("%s: max gap %s", name, ", ".join(f"{g:.3g}" for g in gaps[name]))
    for name, commuting in (("matrix_commuting", True), ("matrix_generic", False)):
        A, b, _ = matrix_sensing(streams["probe"], ib.matrix_dim, ib.num_measurements, commuting, dtype)
        gaps[name] = []
        compare = jax.jit(partial(matrix_gd_vs_mirror, steps=steps, log_every=every))
        for k in scales:
            X_gd, X_md = compare(A, b, ib.control_alpha, lr=ib.control_lr / k, substeps=k)
            gaps[name].append(float(np.linalg.norm(np.asarray(X_gd - X_md), axis=(1, 2)).max()))
        log.info("%s: max gap %s", name, ", ".join(f"{g:.3g}" for g in gaps[name]))
    # Lie brackets at a random point (diagonal models: 0; UU^T and W2 W1: not)
    w = jax.random.normal(streams["init"], (8,), dtype) + 1.0
    brackets = {"uu_minus_vv": MirrorModel("uu_minus_vv", 1.0, 1.0).G, "uv": MirrorModel("uv", 1.0, 1.0).G,
                "power3": MirrorModel("power", 1.0, 1.0, 3).G,
                "UUt": lambda p: (p[:4].reshape(2, 2) @ p[:4].reshape(2, 2).T).ravel(),
                "W2W1": lambda p: (p[4:].reshape(2, 2) @ p[:4].reshape(2, 2)).ravel()}
    lie = {name: float(jax.jit(partial(max_lie_bracket, G))(w)) for name, G in brackets.items()}
    logged = log_steps(steps, every)
    rows = [{"step": s, "t": s * lr, "loss": float(losses[i]),
             **{f"gap_{name}": float(curves[name][i]) for name in models}} for i, s in enumerate(logged)]
    context = {"lrs": [lr / k for k in scales], "control_lrs": [ib.control_lr / k for k in scales], "gaps": gaps,
               "commuting": ["uu_minus_vv", "uv", "power3", "matrix_commuting"], "control": ["matrix_generic"],
               "lie_brackets": lie, "lie_commuting": ["uu_minus_vv", "uv", "power3"],
               "lie_noncommuting": ["UUt", "W2W1"]}
    summary = _finish(cfg, run, rows, context,
                      {"lrs": context["lrs"], "control_lrs": context["control_lrs"], "T": steps * lr,
                       "control_T": steps * ib.control_lr, "alpha": ib.alpha, "uv_init": list(ib.uv_init),
                       "power_alpha": ib.power_alpha, "d": ib.d, "n": ib.n},
                      {"gaps": gaps, "lie_brackets": lie})
    plt, path = _fig(run.figures, "mirror_descent.png")
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for i, (name, g) in enumerate(gaps.items()):
        rel = np.arange(len(g))
        ax.plot(rel, g, "o-" if name != "matrix_generic" else "s--", color=f"C{i}", label=name)
    ax.set(xticks=range(len(scales)), xticklabels=[f"η/{k}" for k in scales], yscale="log",
           ylabel="max_t ‖x_GD(t) − x_MD(t)‖", title=f"{cfg.name}: gap halves with η iff G commutes")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return summary


# ------------------------------------------------------------------------------------ kernel_rich

@TASKS.register("kernel_rich")
def run_kernel_rich_task(cfg: Config, run: RunDir) -> dict:
    """GD on u⊙u − v⊙v from u = v = α for each α vs argmin Q_α; ℓ1 and ℓ2 references."""
    ib = cfg.implicit_bias
    _validate_regression(cfg)
    check(len(ib.alphas) >= 1 and all(a > 0 for a in ib.alphas), "implicit_bias.alphas", ib.alphas,
          "a non-empty list of floats > 0")
    check(ib.lr_scale > 0, "implicit_bias.lr_scale", ib.lr_scale, "a float > 0")
    dtype = set_precision(cfg.precision)
    steps, every = cfg.train.steps, cfg.train.log_every
    alphas = jnp.asarray(ib.alphas, dtype)
    lrs = jnp.minimum(cfg.optimizer.lr, ib.lr_scale / alphas ** 2)

    @jax.jit
    def go(key, alphas, lrs):
        Z, y, w_star = sparse_regression(key, ib.d, ib.n, ib.sparsity, dtype)

        def one(a, lr):
            _, logs = run_gd("uu_minus_vv", init_params(ib.d, 1.0, dtype=dtype) * a, Z, y, lr=lr, steps=steps,
                             log_every=every, tol=ib.tol)
            xs = jax.vmap(lambda w: diag_map("uu_minus_vv", w))(logs)
            x_q, res_q = argmin_woodworth(Z, y, a)
            return xs, x_q, res_q

        xs, x_q, res_q = jax.vmap(one)(alphas, lrs)
        return Z, y, w_star, xs, x_q, res_q

    streams = rng_streams(cfg.seed)
    Z, y, w_star, xs, x_q, res_q = jax.device_get(go(streams["data"], alphas, lrs))
    nrm = np.linalg.norm(w_star)
    x_l2 = np.asarray(min_l2_interpolant(Z, y))
    x_l1 = min_weighted_l1_interpolant(Z, y)
    logged = log_steps(steps, every)
    rows = []
    for i, s in enumerate(logged):
        res = np.linalg.norm(xs[:, i] @ Z.T - y, axis=1)
        row = {"step": s, "loss": float(0.5 * np.mean(res ** 2 / ib.n))}
        for j, a in enumerate(ib.alphas):
            row[f"rel_err_a{a:g}"] = float(np.linalg.norm(xs[j, i] - w_star) / nrm)
            row[f"residual_a{a:g}"] = float(res[j])
        rows.append(row)
    x_gd = xs[:, -1]
    context = {"alphas": list(ib.alphas), "gd_rel_err": _floats(np.linalg.norm(x_gd - w_star, axis=1) / nrm),
               "q_rel_err": _floats(np.linalg.norm(x_q - w_star, axis=1) / nrm),
               "gd_to_q": _floats(np.linalg.norm(x_gd - x_q, axis=1) / nrm),
               "residual": _floats(np.linalg.norm(x_gd @ Z.T - y, axis=1)), "q_residual": _floats(res_q),
               "l2_rel_err": float(np.linalg.norm(x_l2 - w_star) / nrm),
               "l1_rel_err": float(np.linalg.norm(x_l1 - w_star) / nrm)}
    summary = _finish(cfg, run, rows, context, {"alphas": list(ib.alphas), "lrs": _floats(lrs), "tol": ib.tol,
                                                "d": ib.d, "n": ib.n, "sparsity": ib.sparsity},
                      {k: v for k, v in context.items() if k != "alphas"})
    _plot_kernel_rich(run, Z, y, w_star, x_gd, x_q, x_l1, x_l2, ib.alphas, cfg.name)
    return summary


def _plot_kernel_rich(run, Z, y, w_star, x_gd, x_q, x_l1, x_l2, alphas, title):
    plt, path = _fig(run.figures, "kernel_rich.png")
    nrm = np.linalg.norm(w_star)
    grid = np.logspace(np.log10(min(alphas)) - 1, np.log10(max(alphas)) + 0.5, 25)
    x_grid = jax.jit(jax.vmap(argmin_woodworth, in_axes=(None, None, 0)))(
        jnp.asarray(Z), jnp.asarray(y), jnp.asarray(grid, jnp.asarray(Z).dtype))[0]
    q_curve = np.linalg.norm(np.asarray(x_grid) - w_star, axis=1) / nrm
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].plot(grid, q_curve, "-", color="C0", label="argmin Q_α (Woodworth potential)")
    axes[0].plot(alphas, np.linalg.norm(x_gd - w_star, axis=1) / nrm, "o", color="C3", label="GD from u = v = α")
    axes[0].axhline(np.linalg.norm(x_l2 - w_star) / nrm, color="k", ls="--", lw=0.8, label="min-ℓ2 (kernel)")
    axes[0].axhline(max(np.linalg.norm(x_l1 - w_star) / nrm, 1e-16), color="k", ls=":", lw=0.8,
                    label="min-ℓ1 (rich)")
    axes[0].set(xscale="log", xlabel="init scale α", ylabel="‖x − w*‖/‖w*‖", title=title)
    axes[0].legend(fontsize=8)
    order = np.argsort(-np.abs(x_l2))[:30]
    for j, a in enumerate(alphas):
        axes[1].plot(x_gd[j][order], "o", ms=3, color=f"C{j}", label=f"GD α={a:g}")
        axes[1].plot(x_q[j][order], "-", lw=0.7, color=f"C{j}")
    axes[1].plot(w_star[order], "k_", ms=8, label="w*")
    axes[1].set(xlabel="coordinate (30 largest of min-ℓ2)", ylabel="x_j (lines: argmin Q_α)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------------- margin

@TASKS.register("margin")
def run_margin_task(cfg: Config, run: RunDir) -> dict:
    """GD on a two-layer Leaky-ReLU net (small init and a large-init contrast) on symmetric data."""
    ib = cfg.implicit_bias
    check(ib.d >= 1 and ib.n >= 1, "implicit_bias.n", ib.n, "d >= 1 and n >= 1")
    check(ib.width >= 1, "implicit_bias.width", ib.width, "an integer >= 1")
    check(0 < ib.leak < 1, "implicit_bias.leak", ib.leak, "a float in (0, 1)")
    check(ib.init_scale > 0, "implicit_bias.init_scale", ib.init_scale, "a float > 0")
    check(ib.contrast_init_scale > 0, "implicit_bias.contrast_init_scale", ib.contrast_init_scale, "a float > 0")
    check(ib.num_seeds >= 1, "implicit_bias.num_seeds", ib.num_seeds, "an integer >= 1")
    dtype = set_precision(cfg.precision)
    steps, every, lr, leak = cfg.train.steps, cfg.train.log_every, cfg.optimizer.lr, ib.leak

    @jax.jit
    @partial(jax.vmap, in_axes=(0, 0, None))
    def one(data_key, init_key, scale):
        X, y = symmetric_separable_data(jax.random.wrap_key_data(data_key), ib.n, ib.d, dtype)
        p0 = jax.tree.map(lambda a: scale * a, init_two_layer(jax.random.wrap_key_data(init_key), ib.d, ib.width,
                                                               1.0, dtype))
        p, logs = train_two_layer(p0, X, y, leak, lr=lr, steps=steps, log_every=every)
        per = jax.vmap(lambda q: (logistic_loss(q, X, y, leak), normalized_margin(q, X, y, leak),
                                  linearity(q, X, leak)))(logs)
        return X, y, effective_linear(p), per

    data_keys, init_keys = _seed_keys(cfg.seed, ib.num_seeds)
    init_keys = jnp.stack([jax.random.key_data(rng_streams(cfg.seed + i)["init"]) for i in range(ib.num_seeds)])
    X, y, beta, (lo, q, lin) = jax.device_get(one(data_keys, init_keys, ib.init_scale))
    _, _, beta_c, (lo_c, q_c, lin_c) = jax.device_get(one(data_keys, init_keys, ib.contrast_init_scale))
    q_star, cos = [], []
    for s in range(ib.num_seeds):
        w_hat, gamma = svm_direction(X[s], y[s])
        q_star.append(optimal_margin(gamma, leak))
        cos.append(float(beta[s] @ w_hat / np.linalg.norm(beta[s])))
    q_star = np.asarray(q_star)[:, None]
    ratio, ratio_c = q / q_star, q_c / q_star
    logged = log_steps(steps, every)
    rows = [{"step": s, "loss": float(lo[:, i].mean()), "ratio": float(ratio[:, i].mean()),
             "ratio_min": float(ratio[:, i].min()), "linearity": float(lin[:, i].max()),
             "contrast_loss": float(lo_c[:, i].mean()), "contrast_ratio": float(ratio_c[:, i].mean()),
             "contrast_linearity": float(lin_c[:, i].min())} for i, s in enumerate(logged)]
    context = {"seeds": list(range(cfg.seed, cfg.seed + ib.num_seeds)), "ratio": _floats(ratio[:, -1]),
               "cos": cos, "linearity": _floats(lin[:, -1]), "contrast_ratio": _floats(ratio_c[:, -1]),
               "contrast_linearity": _floats(lin_c[:, -1]), "q_star": _floats(q_star)}
    summary = _finish(cfg, run, rows, context,
                      {"width": ib.width, "leak": leak, "init_scale": ib.init_scale,
                       "contrast_init_scale": ib.contrast_init_scale, "d": ib.d, "n_base": ib.n,
                       "num_seeds": ib.num_seeds},
                      {k: v for k, v in context.items() if k != "seeds"})
    plt, path = _fig(run.figures, "margin.png")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    x = np.maximum(np.asarray(logged), 1)
    for s in range(ib.num_seeds):
        axes[0].plot(x, ratio[s], color="C0", lw=1, label=f"init {ib.init_scale:g}" if s == 0 else None)
        axes[0].plot(x, ratio_c[s], color="C3", lw=1, label=f"init {ib.contrast_init_scale:g}" if s == 0 else None)
        axes[1].plot(x, lin[s], color="C0", lw=1)
        axes[1].plot(x, lin_c[s], color="C3", lw=1)
    axes[0].axhline(1.0, color="k", ls="--", lw=0.8, label="q* = (1+α)/4·γ_SVM")
    axes[0].set(xscale="log", xlabel="step", ylabel="q(θ)/q*", title=cfg.name)
    axes[0].legend(fontsize=8)
    axes[1].set(xscale="log", yscale="log", xlabel="step", ylabel="‖f − (1+α)/2·Xβ‖/‖f‖ (linearity)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return summary
