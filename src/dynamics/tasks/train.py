"""Task ``train``: train a model with an optax optimizer, probe it, and check the experiment's claim."""

import dataclasses
import logging
from typing import NamedTuple

import jax
import jax.numpy as jnp

from dynamics.config import Config
from dynamics.data import build_dataset
from dynamics.errors import check
from dynamics.io import RunDir
from dynamics.losses import LOSSES
from dynamics.models import build_model, num_params
from dynamics.optim import build_optimizer, hyperparams_of
from dynamics.optim.registry import extra_update_args
from dynamics.plots import plot_training
from dynamics.probes import PROBES, ProbeContext
from dynamics.scaling import apply_scaling, steps_multiplier
from dynamics.svag import is_adaptive, svag_hyperparams
from dynamics.tasks.base import TASKS, Progress
from dynamics.train import TrainOutcome, TrainState, evaluate, make_step, rng_streams, train
from dynamics.train.checkpoint import CheckpointError, restore_latest, save_checkpoint
from dynamics.train.loop import initial_probe_states
from dynamics.train.sharding import data_mesh, replicate, shard_batch
from dynamics.claims import judge, missing_verdict, seed_list
from dynamics.claims.base import not_applicable_verdict
from dynamics.claims.eos import THRESHOLDS, not_applicable_reason, required_probe

log = logging.getLogger("dynamics")


def set_precision(precision: str) -> jnp.dtype:
    """Switch 64-bit mode on or off for this run (global JAX state) and return the float dtype."""
    jax.config.update("jax_enable_x64", precision == "float64")
    return jnp.float64 if precision == "float64" else jnp.float32


def build_probes(cfg: Config, ctx: ProbeContext, params, key):
    probes = []
    for index, field in enumerate(dataclasses.fields(cfg.probes)):
        options = dataclasses.asdict(getattr(cfg.probes, field.name))
        if options["every"] > 0:
            probes.append(PROBES.get(field.name)(ctx, params, jax.random.fold_in(key, index),
                                                 **options))
    return probes


def scaled_hyperparameters(cfg: Config) -> tuple[dict, int, dict]:
    """Optimizer hyperparameters and step count after the scaling rule and SVAG's rescaling.

    Returns ``(hparams by config key incl. batch_size, steps, applied)``, where ``applied`` records the
    base and scaled values for summary.json (empty when nothing was rescaled).
    """
    base = {**dataclasses.asdict(cfg.optimizer), "batch_size": cfg.train.batch_size}
    hparams, steps, applied = dict(base), cfg.train.steps, {}
    if cfg.scaling.rule != "none" or cfg.scaling.kappa != 1.0:
        check(base["batch_size"] is not None, "train.batch_size", None,
              "an integer > 0 when scaling.kappa != 1 (the base batch size B0)")
        hparams = apply_scaling(cfg.scaling.rule, cfg.optimizer.name, hparams, cfg.scaling.kappa)
        steps = max(1, round(steps * steps_multiplier(cfg.scaling.kappa)))
        applied["scaling"] = {"rule": cfg.scaling.rule, "kappa": cfg.scaling.kappa, "base": base,
                              "scaled": hparams, "steps": steps}
    if cfg.oracle.name == "svag":
        before = dict(hparams)
        hparams, multiplier = svag_hyperparams(cfg.optimizer.name, hparams, cfg.oracle.svag_l)
        steps = max(1, round(steps * multiplier))
        applied["svag"] = {"l": cfg.oracle.svag_l, "base": before, "scaled": hparams, "steps": steps}
    return hparams, steps, applied


def stability_lines(optimizer: str, hparams: dict) -> dict:
    """Threshold lines for the figures: the optimizer's, and 2 for spherical sharpness × η_eff."""
    lines = {"spherical_sharpness_x_eta_eff": ("2", 2.0)}
    if optimizer in THRESHOLDS:
        stability = THRESHOLDS.get(optimizer)
        if optimizer == "normalized_gd":
            value = lambda row: stability.threshold(hparams, row)  # noqa: E731  (per row)
        else:
            value = float(stability.threshold(hparams, {}))
        lines[stability.metric] = (stability.label_for(hparams), value)
    return lines


class Point(NamedTuple):
    """Everything one run (or one point of a vmapped sweep) needs, built from its config."""

    cfg: Config
    dataset: object
    model: object
    optimizer: dict  # hyperparameters by config key after scaling/SVAG, with batch_size
    hparams: dict  # the optimizer's traced hyperparameters (optax names)
    steps: int
    applied: dict
    state: TrainState
    probes: list
    step_fn: object
    train_metrics: object
    probe_key: jax.Array
    dt: float


def build_point(cfg: Config) -> Point:
    """Data, model, optimizer, initial state and probes for ``cfg`` (nothing compiled yet)."""
    dtype = set_precision(cfg.precision)
    streams = rng_streams(cfg.seed)
    data_options = {k: v for k, v in dataclasses.asdict(cfg.data).items() if k not in ("name", "seed")}
    data_key = streams["data"] if cfg.data.seed is None else rng_streams(cfg.data.seed)["data"]
    dataset = build_dataset(cfg.data.name, data_key, dtype=dtype, **data_options)
    classification = dataset.num_classes > 0
    check(cfg.train.batch_size is None or cfg.train.batch_size <= dataset.n_train,
          "train.batch_size", cfg.train.batch_size, f"null or 1..{dataset.n_train} (data.n_train)")
    check(classification or cfg.train.loss == "mse", "train.loss", cfg.train.loss,
          "mse for a regression data set")

    model_options = {k: v for k, v in dataclasses.asdict(cfg.model).items() if k != "name"}
    model = build_model(cfg.model.name, dataset.input_shape, dataset.out_dim, **model_options)
    params = jax.tree.map(lambda p: p.astype(dtype), model.init(streams["init"]))
    optimizer, steps, applied = scaled_hyperparameters(cfg)
    check(optimizer["batch_size"] is None or optimizer["batch_size"] <= dataset.n_train,
          "scaling.kappa", cfg.scaling.kappa, f"a value keeping the batch within data.n_train="
          f"{dataset.n_train} (scaled batch {optimizer['batch_size']})")
    tx = build_optimizer(cfg.optimizer.name, **optimizer)
    hparams = hyperparams_of(cfg.optimizer.name, optimizer)
    loss = LOSSES.get(cfg.train.loss)
    step_fn = make_step(model.apply, loss, tx, batch_size=optimizer["batch_size"],
                        classification=classification, oracle=cfg.oracle.name,
                        extra_args=extra_update_args(cfg.optimizer.name),
                        label_noise_std=cfg.oracle.label_noise_std,
                        num_classes=dataset.num_classes, svag_l=cfg.oracle.svag_l,
                        sampling=cfg.train.sampling,
                        adaptive=is_adaptive(cfg.optimizer.name))
    ctx = ProbeContext(model.apply, loss, dataset, cfg.optimizer.name, hparams, step_fn,
                       optimizer["batch_size"], cfg.train.sampling)
    probes = build_probes(cfg, ctx, params, streams["probe"])
    state = TrainState(jnp.asarray(0), params, tx.init(params), streams["noise"])
    train_metrics = evaluate(model.apply, loss, classification, with_grad_norm=True)
    dt = optimizer["lr"] ** (2 if is_adaptive(cfg.optimizer.name) else 1)
    return Point(cfg, dataset, model, optimizer, hparams, steps, applied, state, probes, step_fn,
                 train_metrics, streams["probe"], dt)


def summarize(point: Point, rows: list[dict], figures, outcome: TrainOutcome) -> dict:
    """Verdict, figures and summary of one finished (or diverged) run."""
    cfg, optimizer, hparams = point.cfg, point.optimizer, point.hparams
    context = {"optimizer": cfg.optimizer.name, "hparams": hparams}
    reason = not_applicable_reason(cfg.claim.name, cfg.optimizer.name)
    if reason is not None:  # known before compiling (logged at the start); the run still measures
        verdict = not_applicable_verdict(reason)
    elif outcome.status == "finished" or cfg.claim.name == "none":
        verdict = judge(cfg.claim.name, rows, context, cfg.claim.criteria)
    else:  # no numbers computed on NaNs: the claim's evidence is missing
        verdict = missing_verdict(f"a finished run ({outcome.status} at step "
                                  f"{outcome.diverged_step})")
    title = f"{cfg.name}: {cfg.optimizer.name}, η={optimizer['lr']:g}, seed {cfg.seed}"
    plot_training(rows, figures, title=title, thresholds=stability_lines(cfg.optimizer.name, hparams),
                  diverged_step=outcome.diverged_step)
    summary = {
        "status": outcome.status,
        # a diverged run completed the steps before its non-finite one (a masked lane stops there)
        "steps_completed": (int(outcome.state.step) if outcome.diverged_step is None
                            else int(outcome.diverged_step)),
        "hparams": {"lr": optimizer["lr"], "optimizer": cfg.optimizer.name, **hparams,
                    "batch_size": optimizer["batch_size"], "steps": point.steps, "seed": cfg.seed},
        **point.applied,
        "num_params": num_params(point.state.params),
        "final": {k: v for k, v in rows[-1].items() if k != "step"} if rows else {},
        "verdict": verdict,
    }
    if outcome.diverged_step is not None:
        summary["diverged_step"] = outcome.diverged_step
    return summary


def starting_state(cfg: Config, run: RunDir, point: Point) -> tuple:
    """``(train state, probe states)`` to start from: with ``resume``, the newest checkpoint that
    verifies (corrupt ones are named and skipped); otherwise the initial ones, forgetting the rows and
    checkpoints of an earlier attempt in this directory."""
    state, probe_states = point.state, initial_probe_states(point.probes)
    if not cfg.resume:
        run.rewind(0)
        for old in run.checkpoints.glob("ckpt_*.npz"):
            old.unlink()
        return state, probe_states
    found = restore_latest(run.checkpoints, (state, probe_states), on_skip=lambda path, err:
                           log.warning("resume: skipped %s: %s", path.name, err))
    if found is None:
        raise CheckpointError(f"resume: no usable checkpoint in {run.checkpoints}")
    (state, probe_states), meta, path = found
    run.rewind(meta["metrics_offset"])
    log.info("resume: resumed from step %d (%s)", meta["step"], path)
    return state, probe_states


def placed(cfg: Config, point: Point, state, probe_states) -> tuple:
    """``(x, y, state, probe_states, probes)`` on the devices: as built, or with ``parallel.data`` the
    batch and the probes' examples sharded over a data mesh and the states replicated."""
    x, y, probes = point.dataset.x_train, point.dataset.y_train, point.probes
    if not cfg.parallel.data:
        return x, y, state, probe_states, probes
    mesh = data_mesh()
    x, y = shard_batch(mesh, (x, y))
    state, probe_states = replicate(mesh, (state, probe_states))
    probes = [p._replace(data=shard_batch(mesh, p.data, f"probes.{p.name}.n_examples"))
              for p in probes]
    log.info("data parallel over %d devices", len(mesh.devices.flat))
    return x, y, state, probe_states, probes


@TASKS.register("train")
def run_train(cfg: Config, run: RunDir) -> dict:
    """Build data, model, optimizer and probes from ``cfg``; train; write figures; return the summary.

    With ``vmap.*`` lists set, runs the whole grid of points in one compiled program instead
    (``dynamics.tasks.sweep``).
    """
    cfg = with_claim_probe(with_claim_seeds(cfg))
    reason = not_applicable_reason(cfg.claim.name, cfg.optimizer.name)
    if reason is not None:
        log.warning("claim %s: %s (the run trains and measures; its verdict is passed=False)",
                    cfg.claim.name, reason)
    if vmap_axes(cfg):
        from dynamics.tasks.sweep import run_vmapped

        return run_vmapped(cfg, run)
    point = build_point(cfg)
    state, probe_states = starting_state(cfg, run, point)
    run.mark(int(state.step))
    last = {}  # the state at the last chunk end, checkpointed when the run is interrupted

    def save(state, probe_states, step):
        run.mark(step)
        last.update(state=state, probe_states=dict(probe_states), step=step)
        if cfg.checkpoint.every and step % cfg.checkpoint.every == 0 and step < point.steps:
            save_checkpoint(run.checkpoints, step, (state, probe_states),
                            {"metrics_offset": run.offset()}, keep=cfg.checkpoint.keep)

    log.info("%s: %s on %s (%d params), %s lr=%g, %d steps", cfg.name, cfg.model.name,
             point.dataset.name, num_params(state.params), cfg.optimizer.name,
             point.optimizer["lr"], point.steps)
    progress = Progress(point.steps, start=int(state.step), enabled=cfg.progress, desc=cfg.name)

    def log_rows(rows):  # continuous time t = k·η (SGD family) or k·η² (adaptive), after rescaling
        run.log(with_time(rows, point.dt))

    def on_progress(n):
        last = run.rows[-1] if run.rows else {}
        progress.update(n, loss=last.get("loss"))

    x, y, state, probe_states, probes = placed(cfg, point, state, probe_states)
    try:
        outcome = train(state, point.step_fn, x, y, steps=point.steps, chunk=cfg.train.chunk,
                        probes=probes, probe_key=point.probe_key,
                        final_metrics=lambda p: point.train_metrics(p, x, y), on_rows=log_rows,
                        log_every=cfg.train.log_every, on_progress=on_progress,
                        probe_states=probe_states, on_chunk_end=save)
    except KeyboardInterrupt:  # SIGINT / SIGTERM (preemption): keep the last chunk end resumable
        step = last.get("step")
        if cfg.checkpoint.every and step is not None and step < point.steps:
            run.rewind_to_mark()
            path = save_checkpoint(run.checkpoints, step, (last["state"], last["probe_states"]),
                                   {"metrics_offset": run.offset()}, keep=cfg.checkpoint.keep)
            log.warning("interrupted: saved %s (resume=true continues from step %d)", path, step)
        raise
    finally:
        progress.close()
    return summarize(point, run.rows, run.figures, outcome)


def with_time(rows: list[dict], dt: float) -> list[dict]:
    """Add the continuous time ``time = step·dt`` to each row."""
    return [{**row, "time": row["step"] * dt} for row in rows]


def vmap_axes(cfg: Config) -> dict[str, list]:
    """The swept keys of ``vmap.*`` that are set, in config order; ``vmap.args.<name>`` lists appear as
    ``"args.<name>"``."""
    axes = {k: v for k, v in dataclasses.asdict(cfg.vmap).items() if k != "args" and v}
    axes.update({f"args.{k}": list(v) for k, v in (cfg.vmap.args or {}).items() if v})
    return axes


def claim_probe_node(probes, probe: str, every: int):
    """The config node of probe ``probe`` (a claim's curvature probe) measuring every ``every`` steps
    with the tolerance and matvec budget of ``probes.sharpness``."""
    base = probes.sharpness
    return dataclasses.replace(getattr(probes, probe), every=every, tol=base.tol,
                               max_iters=base.max_iters)


def with_claim_probe(cfg: Config) -> Config:
    """The curvature probe the claim reads, switched on at ``probes.sharpness``' cadence and tolerance
    when it is off and the sharpness probe is on (``+exp=eos optimizer.name=amsgrad`` measures
    λ_max(P⁻¹H) as well as λ_max(H)); ``cfg`` unchanged otherwise."""
    probe = required_probe(cfg.claim.name, cfg.optimizer.name, cfg.claim.criteria)
    base = cfg.probes.sharpness
    if probe is None or getattr(cfg.probes, probe).every > 0 or base.every == 0:
        return cfg
    node = claim_probe_node(cfg.probes, probe, base.every)
    log.info("claim %s reads %s for %s: measured every %d steps, like probes.sharpness", cfg.claim.name,
             probe, cfg.optimizer.name, base.every)
    return dataclasses.replace(cfg, probes=dataclasses.replace(cfg.probes, **{probe: node}))


def with_claim_seeds(cfg: Config) -> Config:
    """A claim over ``claim.seeds > 1`` seeds becomes a vmapped sweep over ``vmap.seed`` = S, S+1, …
    (unless ``vmap.seed`` is given explicitly)."""
    if cfg.claim.seeds <= 1 or cfg.vmap.seed:
        return cfg
    return dataclasses.replace(cfg, vmap=dataclasses.replace(
        cfg.vmap, seed=seed_list(cfg.seed, cfg.claim.seeds)))
