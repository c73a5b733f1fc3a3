"""Task ``label_noise_flow``: label-noise SGD follows the limiting flow −(c/4)·P_T∇tr∇²L (Li, Wang, Arora 2022).

The mean x̄ of ``num_runs`` vmapped label-noise runs (step ``optimizer.lr``, c = σ²/B) is compared at times
t = η²·step with the Euler-integrated flow dw/dt = −flow_constant·c·P_T∇tr∇²L from Φ(w₀), and with a flow of
a wrong constant (``discrimination_constant``) that the comparison must reject. The standard error of x̄
(from the spread of the runs) is logged beside the distance. One seed (``seed``: data and noise) per run;
``claim.seeds`` judges several. Control: ``implicit_bias.label_noise_flow.flow_constant=0.5``.
"""

import jax
import jax.numpy as jnp
import numpy as np

from dynamics.config import Config
from dynamics.flows import (diag_map, gradient_flow_limit, hessian_trace, init_params, label_noise_flow,
                            log_steps, loss, relative_error, run_label_noise, sparse_regression)
from dynamics.io import RunDir
from dynamics.tasks.base import TASKS
from dynamics.tasks.implicit_bias_common import figure, finish
from dynamics.tasks.train import set_precision
from dynamics.train import rng_streams


def _flow(predict, trace, w0, Z, y, *, c, constant, dt_log, chunks, sub, rem_dt, sub_rem):
    """The flow logged at the label-noise log times: ``chunks`` intervals of ``dt_log`` (``sub`` Euler steps
    each), then a remainder of ``rem_dt`` (``sub_rem`` steps) when train.steps is not a multiple."""
    _, logs = label_noise_flow(predict, trace, w0, Z, y, c=c, dt=dt_log / sub, steps=chunks * sub,
                               log_every=sub, constant=constant)
    if sub_rem:
        _, tail = label_noise_flow(predict, trace, logs[-1], Z, y, c=c, dt=rem_dt / sub_rem, steps=sub_rem,
                                   log_every=sub_rem, constant=constant)
        logs = jnp.concatenate([logs, tail[1:]])
    return logs


def _simulate(cfg: Config, dtype, every: int):
    f, steps, lr = cfg.implicit_bias.label_noise_flow, cfg.train.steps, cfg.optimizer.lr
    kind, depth = f.model, f.depth
    c = f.label_noise_std ** 2 / (f.batch_size or f.n)
    chunks, rem = divmod(steps, every)
    timing = dict(dt_log=every * lr ** 2, chunks=chunks, sub=max(1, int(np.ceil(every * lr ** 2 / f.flow_dt))),
                  rem_dt=rem * lr ** 2, sub_rem=int(np.ceil(rem * lr ** 2 / f.flow_dt)) if rem else 0)
    G = jax.vmap(lambda w: diag_map(kind, w, depth))

    def predict(w, Z):
        return Z @ diag_map(kind, w, depth)

    def trace(w, Z, y):
        return hessian_trace(kind, w, Z, y, depth)

    @jax.jit
    def go(data_key, noise_key):
        Z, y, w_star = sparse_regression(data_key, f.d, f.n, f.sparsity, dtype)
        w0 = init_params(f.d, f.alpha, dtype=dtype)
        runs = jax.vmap(lambda k: run_label_noise(kind, w0, Z, y, k, lr=lr, sigma=f.label_noise_std, steps=steps,
                                                  log_every=every, batch_size=f.batch_size, depth=depth)[1])(
            jax.random.split(noise_key, f.num_runs))
        phi = gradient_flow_limit(predict, w0, Z, y, lr=f.phi_lr, steps=f.phi_steps)
        x_flow = G(_flow(predict, trace, phi, Z, y, c=c, constant=f.flow_constant, **timing))
        x_ctrl = G(_flow(predict, trace, phi, Z, y, c=c, constant=f.discrimination_constant, **timing))
        x_runs = jax.vmap(G)(runs)
        x_mean = x_runs.mean(0)
        spread = jnp.sum((x_runs - x_mean) ** 2, axis=(0, 2))
        return {"loss": jax.vmap(jax.vmap(lambda w: loss(kind, w, Z, y, depth)))(runs).mean(0),
                "hessian_trace": jax.vmap(jax.vmap(lambda w: trace(w, Z, y)))(runs).mean(0),
                "rel_err": jax.vmap(lambda x: relative_error(x, w_star))(x_mean),
                "flow_rel_err": jax.vmap(lambda x: relative_error(x, w_star))(x_flow),
                "distance": jnp.linalg.norm(x_mean - x_flow, axis=1),
                "se": jnp.sqrt(spread / (f.num_runs * (f.num_runs - 1))),
                "control_distance": jnp.linalg.norm(x_mean - x_ctrl, axis=1),
                "flow_displacement": jnp.linalg.norm(x_flow - x_flow[0], axis=1),
                "phi_residual": jnp.linalg.norm(predict(phi, Z) - y)}, x_mean, x_flow, x_ctrl

    streams = rng_streams(cfg.seed)
    return c, jax.device_get(go(streams["data"], streams["noise"]))


def _ratio(a, b):
    return float(a) / float(b) if b > 0 else float("nan")


@TASKS.register("label_noise_flow")
def run_label_noise_flow_task(cfg: Config, run: RunDir) -> dict:
    """Average of label-noise runs vs the limiting flow −(c/4)P_T∇tr∇²L at matched times t = η²·step."""
    f, lr, steps = cfg.implicit_bias.label_noise_flow, cfg.optimizer.lr, cfg.train.steps
    every = min(cfg.train.log_every, steps)
    dtype = set_precision(cfg.precision)
    c, (out, x_mean, x_flow, x_ctrl) = _simulate(cfg, dtype, every)
    logged = log_steps(steps, every)
    rows = []
    for i, s in enumerate(logged):
        disp = float(out["flow_displacement"][i])
        rows.append({"step": s, "t": s * lr ** 2,
                     **{k: float(out[k][i]) for k in ("loss", "hessian_trace", "rel_err", "flow_rel_err",
                                                      "distance", "se", "control_distance")},
                     "flow_displacement": disp, "ratio": _ratio(out["distance"][i], disp),
                     "se_ratio": _ratio(out["se"][i], disp), "control_ratio": _ratio(out["control_distance"][i], disp)})
    # a check time beyond the run has no step: the claim fails it as missing evidence
    check_times = [tau / c for tau in f.check_flow_times]  # t = (c·t)/c
    check_steps = [min(logged, key=lambda s: abs(s * lr ** 2 - t)) if t <= steps * lr ** 2 * (1 + 1e-9) else None
                   for t in check_times]
    context = {"check_times": check_times, "check_flow_times": list(f.check_flow_times), "check_steps": check_steps, "c": c, "num_runs": f.num_runs,
               "flow_constant": f.flow_constant, "discrimination_constant": f.discrimination_constant,
               "phi_residual": float(out["phi_residual"])}
    summary = finish(cfg, run, rows, context,
                     {"sigma": f.label_noise_std, "c": c, "num_runs": f.num_runs, "flow_dt_max": f.flow_dt,
                      "flow_constant": f.flow_constant, "discrimination_constant": f.discrimination_constant,
                      "alpha": f.alpha, "d": f.d, "n": f.n, "sparsity": f.sparsity, "model": f.model},
                     {"phi_residual": float(out["phi_residual"])})
    _plot(run, rows, x_mean, x_flow, x_ctrl, check_steps, lr, context, cfg)
    return summary


def _plot(run, rows, x_mean, x_flow, x_ctrl, check_steps, lr, context, cfg):
    plt, path = figure(run.figures, "label_noise_flow.png")
    t = np.array([r["t"] for r in rows])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for k, j in enumerate(np.argsort(-np.abs(x_flow[-1]))[:4]):
        axes[0].plot(t, x_mean[:, j], color=f"C{k}", lw=1.2, label="label noise (mean)" if k == 0 else None)
        axes[0].plot(t, x_flow[:, j], color=f"C{k}", ls="--", lw=1,
                     label=f"flow {context['flow_constant']:g}·c" if k == 0 else None)
        axes[0].plot(t, x_ctrl[:, j], color=f"C{k}", ls=":", lw=1,
                     label=f"flow {context['discrimination_constant']:g}·c" if k == 0 else None)
    axes[0].set(xlabel="t = η²·step", ylabel="coordinates of x (largest 4)", title=cfg.name)
    axes[0].legend(fontsize=8)
    axes[1].plot(t, [r["distance"] for r in rows], label="‖x̄_LN − x_flow‖")
    axes[1].plot(t, [r["se"] for r in rows], lw=0.8, label="SE of x̄_LN")
    axes[1].plot(t, [r["control_distance"] for r in rows], label="‖x̄_LN − x_wrong constant‖")
    bound = (cfg.claim.criteria or {}).get("max_ratio", 0.15)
    axes[1].plot(t, [bound * r["flow_displacement"] for r in rows], "k--", lw=0.8,
                 label=f"{bound:g} × flow displacement")
    for s in filter(None, check_steps):
        axes[1].axvline(s * lr ** 2, color="gray", ls=":", lw=0.8)
    axes[1].set(xlabel="t = η²·step", ylabel="distance in x")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
