r"""Task ``central_flow``: GD or RMSProp, its central flow and its stable flow side by side
(Cohen, Damian, Talwalkar, Kolter, Lee, ICLR 2025; ../shared/papers/central_flows.md).

Data ``data.*``, network ``model.*``, loss ``train.loss`` as in the trainer; the optimizer is
``optimizer.name`` (gd | rmsprop) with its real hyperparameters (``lr`` = η, ``b2``, ``eps``,
``bias_correction``; ε outside the square root, as the trainer's rmsprop). ``central.warm_start``
discrete steps are taken first, then the processes of ``central.processes`` run ``train.steps`` steps from
the same point (``dynamics.flows.central_run.run_central_flows``). One row per step: each process's loss,
sharpness (raw λ_max) and effective sharpness (ηλ_max for GD, λ_max(P⁻¹H) for RMSProp), the predicted
loss, tr X, σ² (= tr Σ), Σδ² (GD's displacement from the central flow along Σ's directions, squared),
the distances. The claim is ``claim.name`` (``central_flow``); the figure is ``figures/central_flow.png``.
"""

import dataclasses
import functools
import json

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from dynamics.claims import judge
from dynamics.config import Config
from dynamics.config_central import validate_central
from dynamics.data import build_dataset
from dynamics.flows.central_optim import discrete_transform, gd, rmsprop
from dynamics.flows.central_run import CentralFlowSettings, run_central_flows
from dynamics.io import RunDir
from dynamics.losses import LOSSES
from dynamics.models import build_model, num_params
from dynamics.tasks.base import TASK_CHECKS, TASKS
from dynamics.tasks.train import set_precision
from dynamics.train import rng_streams


@functools.lru_cache(maxsize=8)
def _loss_fn(model_name, input_shape, out_dim, options_json, loss_name):
    """``loss(params, (x, y))``, one function object per model so that seeds share compilations
    (the model options as sorted JSON: hashable, lists and dicts included)."""
    model = build_model(model_name, input_shape, out_dim, **json.loads(options_json))
    loss = LOSSES.get(loss_name)
    return model, (lambda params, data: loss(model.apply(params, data[0]), data[1]))


def build(cfg: Config, dtype):
    """``(loss_fn, params, data, optimizer)`` of ``cfg``."""
    streams = rng_streams(cfg.seed)
    data_options = {k: v for k, v in dataclasses.asdict(cfg.data).items() if k not in ("name", "seed")}
    data_key = streams["data"] if cfg.data.seed is None else rng_streams(cfg.data.seed)["data"]
    ds = build_dataset(cfg.data.name, data_key, dtype=dtype, **data_options)
    options = json.dumps({k: v for k, v in dataclasses.asdict(cfg.model).items() if k != "name"},
                         sort_keys=True)
    model, loss_fn = _loss_fn(cfg.model.name, ds.input_shape, ds.out_dim, options, cfg.train.loss)
    params = jax.tree.map(lambda p: p.astype(dtype), model.init(streams["init"]))
    o = cfg.optimizer
    opt = gd(o.lr) if o.name == "gd" else rmsprop(o.lr, o.b2, o.eps, bias_correction=o.bias_correction,
                                                   eps_in_sqrt=True)  # optax.rmsprop, as the trainer
    return loss_fn, params, (ds.x_train, ds.y_train), opt


@functools.lru_cache(maxsize=8)
def _discrete_losses(loss_fn, steps: int):
    """Jitted ``(opt, flat w0, unravel-free data) -> losses`` of ``steps`` discrete steps (one scan)."""

    def run(opt, params, data):
        tx = discrete_transform(opt)
        w0, unravel = ravel_pytree(params)

        def body(carry, _):
            w, st = carry
            loss, g = jax.value_and_grad(lambda x: loss_fn(unravel(x), data))(w)
            upd, st = tx.update(g, st, w)
            return (w + upd, st), loss

        return jax.lax.scan(body, (w0, tx.init(w0)), None, length=steps)[1]

    return jax.jit(run)


def warm_start_of(cfg: Config, loss_fn, params, data, opt) -> tuple[int, int | None]:
    """``(warm_start, spike step)``: after the first loss spike (catapult) + ``settle`` steps, when
    ``central.warm_start_auto``; else ``central.warm_start`` (spike ``None``)."""
    c = cfg.central
    if not c.warm_start_auto:
        return c.warm_start, None
    losses = np.asarray(_discrete_losses(loss_fn, c.max_warm_start)(opt, params, data))
    running_min = np.minimum.accumulate(losses)
    spikes = np.flatnonzero(losses > c.spike_factor * running_min)
    if not spikes.size:
        return c.max_warm_start, None
    return min(int(spikes[0]) + c.settle, c.max_warm_start), int(spikes[0])


def settings_of(cfg: Config, warm_start: int) -> CentralFlowSettings:
    c = cfg.central
    eig = tuple(p for p in ("discrete", "stable")
                if p in c.processes and (p != "discrete" or c.track_discrete))
    return CentralFlowSettings(processes=tuple(c.processes), substeps=c.substeps,
                               sdcp_threshold=c.sdcp_threshold,
                               sdcp_candidate=c.sdcp_candidate, track_fraction=c.track_fraction,
                               k_init=c.k_init, k_max=c.k_max, eig_method=c.eig_method, eig_tol=c.eig_tol,
                               eig_max_iters=c.eig_max_iters, eig_processes=eig,
                               stable_min_substeps=c.stable_min_substeps,
                               stable_max_seff=c.stable_max_seff, warm_start=warm_start,
                               ablate_sigma=c.ablate_sigma)


def rows_of(m: dict, procs, warm: int) -> list[dict]:
    """One row per step from ``run_central_flows``'s metrics."""
    delta2 = np.nansum(m["deltas"] ** 2, axis=1)
    delta2[m["n_critical"] < 1] = np.nan
    cols = {"predicted_loss": m["predicted_loss"], "x_trace": np.nansum(m["x_eigs"], axis=1),
            "sigma2": m["sigma_trace"], "delta2": delta2, "n_critical": m["n_critical"]}
    cols["x_trace"][m["n_critical"] < 1] = np.nan
    for p in procs:
        cols[f"loss/{p}"] = m[f"loss/{p}"]
        cols[f"sharpness/{p}"] = m[f"sharpness/{p}"]
        cols[f"eff_sharpness/{p}"] = m[f"eigs/{p}"][:, 0]
        cols[f"hvps/{p}"] = m[f"hvps/{p}"]
    cols.update({k: v for k, v in m.items() if k.startswith("distance/")})
    cols["loss"] = m["loss/discrete"]  # the run contract's loss column: the discrete optimizer's
    steps = len(m["n_critical"])
    return [{"step": warm + t, **{k: (None if not np.isfinite(v[t]) else float(v[t]))
                                  for k, v in cols.items()}} for t in range(steps)]


@TASK_CHECKS.register("central_flow")
def check_central_flow(cfg: Config) -> None:
    validate_central(cfg.central, cfg.optimizer.name)


@TASKS.register("central_flow")
def run_central_flow_task(cfg: Config, run: RunDir) -> dict:
    """Run the processes, log one row per step, judge the claim, draw the figure."""
    dtype = set_precision(cfg.precision)
    loss_fn, params, data, opt = build(cfg, dtype)
    warm, spike = warm_start_of(cfg, loss_fn, params, data, opt)
    settings = settings_of(cfg, warm)
    key = jax.random.fold_in(rng_streams(cfg.seed)["probe"], 0)
    res = run_central_flows(loss_fn, params, data, opt, cfg.train.steps, settings, key=key)
    procs = [p for p in ("discrete", "midpoint", "central", "stable") if p in settings.processes]
    rows = rows_of(res.metrics, procs, settings.warm_start)
    run.log(rows)
    context = {"optimizer": cfg.optimizer.name, "lr": cfg.optimizer.lr, "spike_step": spike,
               "k_max": cfg.central.k_max,
               "min_pass_fraction": cfg.claim.min_pass_fraction}
    verdict = judge(cfg.claim.name, run.rows, context, cfg.claim.criteria)
    plot(run, res.metrics, procs, settings.warm_start, cfg, verdict.get("window", 20))
    hvps = {p: float(np.nansum(res.metrics[f"hvps/{p}"])) for p in procs if p != "midpoint"}
    return {"status": "finished",
            "hparams": {"lr": cfg.optimizer.lr, "optimizer": cfg.optimizer.name, "seed": cfg.seed,
                        "steps": cfg.train.steps, "warm_start": settings.warm_start, "spike_step": spike,
                        "num_params": num_params(params)},
            "final": {k: v for k, v in run.rows[-1].items() if k != "step"} | {"hvps_total": hvps},
            "steps_completed": cfg.train.steps, "verdict": verdict}


_COLORS = {"discrete": "C0", "midpoint": "C2", "central": "C3", "stable": "C7"}


def plot(run: RunDir, m: dict, procs, warm: int, cfg: Config, window: int) -> None:
    """Loss, effective sharpness and distance against time (the paper's figure style)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dynamics.claims.central_flow import boxcar

    run.figures.mkdir(parents=True, exist_ok=True)
    t = warm + np.arange(len(m["n_critical"]))
    fig, ax = plt.subplots(1, 3, figsize=(15, 4))
    for p in procs:
        ax[0].plot(t, m[f"loss/{p}"], color=_COLORS[p], lw=1, label=p)
        ax[1].plot(t, m[f"eigs/{p}"][:, 0], color=_COLORS[p], lw=1, label=p)
    ax[0].plot(t, m["predicted_loss"], "k--", lw=1, label="predicted (L + tr X)")
    gd_loss = m["loss/discrete"]
    if len(gd_loss) >= window:
        ax[0].plot(t[window // 2: window // 2 + len(gd_loss) - window + 1], boxcar(gd_loss, window),
                   color="C1", lw=1.5, label=f"GD, {window}-step mean")
    ax[1].axhline(2.0, color="k", ls=":", lw=0.8)
    for key, label in (("distance/discrete-central", "‖GD − central‖"),
                       ("distance/discrete-stable", "‖GD − stable‖")):
        if key in m:
            ax[2].plot(t, m[key], lw=1, label=label)
    eff = "η·λmax" if cfg.optimizer.name == "gd" else "λmax(P⁻¹H)"
    ax[0].set(xlabel="step", ylabel="train loss", yscale="log", title=cfg.name)
    ax[1].set(xlabel="step", ylabel=f"effective sharpness ({eff})")
    ax[2].set(xlabel="step", ylabel="distance")
    for a in ax:
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(run.figures / "central_flow.png", dpi=110)
    plt.close(fig)
