"""Task ``ntk``: the kernel view of fine-tuning (Malladi, Wettig, Yu, Chen, Arora, ICML 2023) on mnist1d.

A model is pre-trained on the source classes, then fine-tuned on a k-shot target task (the target classes
mapped onto the same output logits, like label words), and compared on the test set with kernel dynamics
around the pre-trained θ₀:
- **GD half**: full-batch GD (step ``optimizer.lr``, ``train.steps`` steps, MSE to one-hot targets, all
  logits) vs kernel GD with the eNTK for the same steps;
- **Adam half** (``tasks/ntk_adam.py``): per-example Adam in the A-SignGD kernel's regime on a binary
  sub-task vs that kernel's sign dynamics, with the eNTK in the same dynamics as the baseline.
Reported per (k, optimizer): accuracies, agreement, the function gap ‖f_FT − f_kernel‖ / ‖f_FT − f₀‖ (so
f₀ itself has gap 1), kernel change and movement (GD also its linearization gap). Metrics rows are the
fine-tuning steps (``loss``: the GD run of the first k; ``loss_{sgd|adam}_k{k}``). Claim
``ntk_finetune`` (``dynamics.claims.ntk``).
"""

import dataclasses
import logging

import jax
import jax.numpy as jnp
import numpy as np

from dynamics.config import Config
from dynamics.data import build_dataset
from dynamics.config_ntk import validate_finetune
from dynamics.io import RunDir
from dynamics.losses import LOSSES
from dynamics.models import build_model, num_params
from dynamics.ntk import empirical_ntk, gradient_descent_mse, linearized_apply
from dynamics.ntk.diagnostics import accuracy, agreement, relative_change
from dynamics.optim import build_optimizer
from dynamics.plots import identity_line, plot_training
from dynamics.tasks.base import TASK_CHECKS, TASKS
from dynamics.tasks.ntk_adam import adam_vs_sign_kernel
from dynamics.tasks.train import set_precision
from dynamics.train import TrainState, make_chunk, make_step, rng_streams
from dynamics.claims import judge

log = logging.getLogger("dynamics")


# --------------------------------------------------------------------------------------------- ntk

def k_shot(key, labels: np.ndarray, num_classes: int, k: int) -> np.ndarray:
    """Indices of ``k`` random examples of each class (sorted by class), without replacement."""
    idx = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        if len(members) < k:
            raise ValueError(f"class {c} has {len(members)} training examples, fewer than k = {k}")
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, c), len(members)))
        idx.append(members[perm[:k]])
    return np.concatenate(idx)


def _train(apply_fn, loss, tx, params, x, y, steps: int, key):
    """Full-batch training for ``steps`` steps in one scan; returns final params and per-step losses."""
    step = make_step(apply_fn, loss, tx, batch_size=None, classification=True)
    state = TrainState(jnp.asarray(0), params, tx.init(params), key)
    state, metrics = make_chunk(step, steps)(state, x, y)
    return state.params, np.asarray(metrics["loss"])


def finetune_gd(cfg: Config, apply_fn, params0, x_tr, y_tr, x_te, y_te, num_classes, key):
    """Fine-tune with full-batch GD from ``params0`` and compare with eNTK kernel GD (same steps)."""
    n, steps, lr = cfg.ntk.finetune, cfg.train.steps, cfg.optimizer.lr
    loss = LOSSES.get("mse")
    onehot = jax.nn.one_hot(y_tr, num_classes, dtype=x_tr.dtype)
    ntk = jax.jit(lambda p, a, b: empirical_ntk(apply_fn, p, a, b, batch_size=n.kernel_batch_size))
    f0_tr, f0_te = apply_fn(params0, x_tr), apply_fn(params0, x_te)
    k0_tr = ntk(params0, x_tr, x_tr)
    # full-batch GD on ½‖f − y‖² (mean over examples) follows kernel GD with rate lr·O in
    # gradient_descent_mse's convention (its loss is a mean over N·O entries), for `steps` steps.
    kernel = gradient_descent_mse(k0_tr, onehot, steps, k_test_train=ntk(params0, x_te, x_tr),
                                  fx_train_0=f0_tr, fx_test_0=f0_te, learning_rate=lr * num_classes,
                                  discrete=True)
    tx = build_optimizer("gd", lr=lr, weight_decay=0.0)
    params, losses = _train(apply_fn, loss, tx, params0, x_tr, y_tr, steps, key)
    f_te = apply_fn(params, x_te)
    f_lin = linearized_apply(apply_fn, params0, params, x_te)
    moved = jnp.linalg.norm(f_te - f0_te)
    curve = np.append(losses, float(loss(apply_fn(params, x_tr), y_tr)))
    out = {
        "ft_test_acc": accuracy(f_te, y_te),
        "ft_train_acc": accuracy(apply_fn(params, x_tr), y_tr),
        "kernel_test_acc": accuracy(kernel.test, y_te),
        "agreement": agreement(f_te, kernel.test),
        "function_gap": float(jnp.linalg.norm(f_te - kernel.test) / moved),
        "f0_agreement": agreement(f_te, f0_te),
        "linearization_gap": float(jnp.linalg.norm(f_te - f_lin) / moved),
        "kernel_change": relative_change(ntk(params, x_tr, x_tr), k0_tr),
        "function_moved": float(moved / jnp.linalg.norm(f0_te)),
        "final_train_loss": float(curve[-1]),
        "kernel_train_loss": float(loss(kernel.train, y_tr)),
        "pretrained_test_acc": accuracy(f0_te, y_te),
        "_f_te": np.asarray(f_te), "_f_kernel": np.asarray(kernel.test),
    }
    return out, curve


def plot_finetune(results: dict, figures, title: str) -> None:
    import matplotlib.pyplot as plt

    figures.mkdir(parents=True, exist_ok=True)
    shots = sorted(results)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    labels, ft, ker, agree = [], [], [], []
    for k in shots:
        for opt, kname in (("sgd", "eNTK"), ("adam", "A-SignGD")):
            r = results[k][opt]
            labels.append(f"{opt.upper()} k={k}\nvs {kname}")
            ft.append(r["ft_test_acc"]), ker.append(r["kernel_test_acc"]), agree.append(r["agreement"])
    pos = np.arange(len(labels))
    ax.bar(pos - 0.27, ft, 0.27, label="fine-tuning")
    ax.bar(pos, ker, 0.27, label="kernel solution")
    ax.bar(pos + 0.27, agree, 0.27, label="agreement rate")
    ax.set_xticks(pos, labels, fontsize=8)
    ax.set(ylim=(0, 1), ylabel="test accuracy / agreement", title=title)
    ax.legend(fontsize=8, loc="lower right")
    ax = axes[1]
    k = shots[-1]
    for opt, marker in (("sgd", "o"), ("adam", "x")):
        r = results[k][opt]
        ax.scatter(r["_f_kernel"].ravel(), r["_f_te"].ravel(), s=3, marker=marker, alpha=0.4,
                   label=f"{opt.upper()} (k={k})")
    identity_line(ax)
    ax.set(xlabel="kernel solution output (test)", ylabel="fine-tuned output (test)",
           title="per-example outputs, all logits")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(figures / "ntk.png", dpi=120)
    plt.close(fig)


def _pretrained(cfg: Config, streams, dtype):
    """The source and target datasets, the model, and its weights pre-trained on the source classes."""
    n = cfg.ntk.finetune
    data_options = {k: v for k, v in dataclasses.asdict(cfg.data).items() if k not in ("name", "classes")}
    source = build_dataset("mnist1d", streams["data"], dtype=dtype,
                           **{**data_options, "classes": list(n.source_classes)})
    target = build_dataset("mnist1d", streams["data"], dtype=dtype,
                           **{**data_options, "n_train": None, "classes": list(n.target_classes)})
    model_options = {k: v for k, v in dataclasses.asdict(cfg.model).items() if k != "name"}
    model = build_model(cfg.model.name, source.input_shape, source.num_classes, **model_options)
    params = jax.tree.map(lambda p: p.astype(dtype), model.init(streams["init"]))
    pretrain_tx = build_optimizer("adam", lr=n.pretrain_lr, b1=0.9, b2=0.999, eps=1e-8)
    params0, pre_losses = _train(model.apply, LOSSES.get("mse"), pretrain_tx, params, source.x_train,
                                 source.y_train, n.pretrain_steps, streams["noise"])
    source_acc = accuracy(model.apply(params0, source.x_test), source.y_test)
    log.info("%s: pre-trained %s (%d params) on classes %s: source test accuracy %.3f", cfg.name,
             cfg.model.name, num_params(params0), list(n.source_classes), source_acc)
    return source, target, model, params0, {"source_test_acc": source_acc,
                                            "pretrain_final_loss": float(pre_losses[-1])}


def _log_rows(cfg: Config, run: RunDir, curves: dict) -> list[dict]:
    """One row per logged fine-tuning step: ``loss`` (GD, first k), ``loss_sgd_k{k}`` and, while the
    per-example Adam run lasts, ``loss_adam_k{k}`` (the loss of the example about to be stepped on)."""
    shots = cfg.ntk.finetune.shots
    rows = []
    for t in range(cfg.train.steps + 1):
        if t % cfg.train.log_every and t != cfg.train.steps:
            continue
        row = {"step": t, "loss": float(curves[shots[0]]["sgd"][t])}
        for k in shots:
            for opt in ("sgd", "adam"):
                if t < len(curves[k][opt]):
                    row[f"loss_{opt}_k{k}"] = float(curves[k][opt][t])
        rows.append(row)
    run.log(rows)
    return rows


@TASK_CHECKS.register("ntk")
def check_ntk(cfg: Config) -> None:
    validate_finetune(cfg.ntk.finetune, cfg.data.name)


@TASKS.register("ntk")
def run_ntk(cfg: Config, run: RunDir) -> dict:
    """Pre-train, fine-tune k-shot with SGD and Adam, compare with the eNTK / A-SignGD kernels."""
    n = cfg.ntk.finetune
    dtype = set_precision(cfg.precision)
    streams = rng_streams(cfg.seed)
    source, target, model, params0, pre = _pretrained(cfg, streams, dtype)
    num_classes = source.num_classes
    results, curves = {}, {}
    y_all = np.asarray(target.y_train)
    for i, k in enumerate(n.shots):
        idx = k_shot(jax.random.fold_in(streams["data"], 1000 + i), y_all, num_classes, k)
        x_tr, y_tr = target.x_train[idx], target.y_train[idx]
        results[k], curves[k] = {}, {}
        results[k]["sgd"], curves[k]["sgd"] = finetune_gd(cfg, model.apply, params0, x_tr, y_tr, target.x_test,
                                                          target.y_test, num_classes, streams["noise"])
        results[k]["adam"], curves[k]["adam"] = adam_vs_sign_kernel(
            cfg, model.apply, params0, x_tr, y_tr, target.x_test, target.y_test,
            jax.random.fold_in(streams["noise"], 2000 + i))
        r = results[k]["sgd"]
        log.info("k=%d GD: FT acc %.3f, kernel acc %.3f, agreement %.3f, function gap %.3f, kernel change %.3g",
                 k, r["ft_test_acc"], r["kernel_test_acc"], r["agreement"], r["function_gap"], r["kernel_change"])
        r = results[k]["adam"]
        log.info("k=%d Adam (b1=%g, b2=%g), binary %s, %d per-example steps: function gap to A-SignGD %.3f, "
                 "to the eNTK %.3f (rate x%g), A-SignGD kernel change %.3g, test margin moved %.3g (RMS)", k,
                 r["b1"], r["b2"], list(n.sign_classes), r["steps"], r["function_gap"], r["entk_function_gap"],
                 r["entk_rate_multiple"], r["kernel_change"], r["function_moved_rms"])

    rows = _log_rows(cfg, run, curves)
    first = n.shots[0]
    plot_training(run.rows, run.figures, title=f"{cfg.name}: SGD fine-tuning, k={first}, η={cfg.optimizer.lr:g}")
    plot_finetune(results, run.figures, f"{cfg.name}: mnist1d {list(n.source_classes)} → "
                                        f"{list(n.target_classes)}")
    numbers = {f"k{k}": {opt: {m: v for m, v in results[k][opt].items() if not m.startswith("_")}
                         for opt in ("sgd", "adam")} | {"pretrained_test_acc": results[k]["sgd"]["pretrained_test_acc"]}
               for k in n.shots}
    verdict = judge(cfg.claim.name, run.rows, {"optimizer": "sgd+adam", "results": numbers}, cfg.claim.criteria)
    final = {k: v for k, v in rows[-1].items() if k != "step"}
    return {
        "status": "finished",
        "steps_completed": cfg.train.steps,
        "hparams": {"lr": cfg.optimizer.lr, "adam_lr": n.adam_lr, "seed": cfg.seed, "shots": list(n.shots),
                    "steps": cfg.train.steps, "pretrain_steps": n.pretrain_steps,
                    "pretrain_lr": n.pretrain_lr, "source_classes": list(n.source_classes),
                    "target_classes": list(n.target_classes)},
        "num_params": num_params(params0),
        **pre,
        "final": final,
        "results": numbers,
        "verdict": verdict,
    }
