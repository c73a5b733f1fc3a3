"""NTK tasks: ``ntk_width`` (empirical → infinite-width NTK) and ``ntk`` (fine-tuning vs kernels).

- ``ntk_width``: the empirical NTK of NTK-parameterized MLPs (``dynamics.ntk.NTKMLP``) at
  initialization against the analytic infinite-width NTK (``infinite_width_kernels``), for a list of
  widths. One metrics row per width (``step`` = width index, ``loss`` = ``rel_error`` = the mean over
  ``ntk.num_seeds`` networks of ‖K_emp − K_∞‖_F / ‖K_∞‖_F). Theory: relative error O(1/√width).
- ``ntk``: the kernel view of fine-tuning (Malladi, Wettig, Yu, Chen, Arora, ICML 2023) on mnist1d.
  A model is pre-trained on the source classes, then fine-tuned on a k-shot target task (the target
  classes mapped onto the same output logits, like label words) with full-batch SGD and with Adam, on
  MSE to one-hot targets. Each fine-tuned model is compared with its kernel solution around the
  pre-trained θ₀: the eNTK with kernel gradient descent for the same number of steps (SGD), and
  least-squares regression with the asymmetric SignGD kernel (Adam). Reported: test accuracies,
  agreement of per-example predictions, ‖f_FT − f_kernel‖ / ‖f_FT − f₀‖ on the test set, relative
  kernel change ‖K(θ_T) − K(θ₀)‖_F / ‖K(θ₀)‖_F on the training set, and the linearization gap
  ‖f(θ_T) − f_lin(θ_T)‖ / ‖f(θ_T) − f(θ₀)‖ on the test set. Metrics rows are the fine-tuning steps
  (``loss``: the SGD run of the first k; ``loss_{sgd|adam}_k{k}`` for every run).
"""

import dataclasses
import logging

import jax
import jax.numpy as jnp
import numpy as np

from dynamics.config import Config
from dynamics.data import build_dataset
from dynamics.errors import check
from dynamics.io import RunDir
from dynamics.losses import LOSSES
from dynamics.models import build_model, num_params
from dynamics.ntk import (
    NTKMLP,
    asymmetric_sign_kernel,
    empirical_ntk,
    gradient_descent_mse,
    infinite_width_kernels,
    kernel_regression,
    linearized_apply,
)
from dynamics.ntk.diagnostics import accuracy, agreement, relative_change
from dynamics.optim import build_optimizer
from dynamics.plots import identity_line, plot_training
from dynamics.tasks.base import TASKS
from dynamics.tasks.train import set_precision
from dynamics.train import TrainState, make_chunk, make_step, rng_streams
from dynamics.claims import judge

log = logging.getLogger("dynamics")


def _finish(cfg: Config, run: RunDir, summary: dict, context: dict) -> dict:
    verdict = judge(cfg.claim.name, run.rows, context, cfg.claim.criteria)
    return {**summary, "verdict": verdict}


# ----------------------------------------------------------------------------------------- ntk_width

def width_errors(cfg: Config) -> tuple[list[dict], jax.Array]:
    """Per width: the relative error of the empirical NTK of each seed's network; and the inputs."""
    n = cfg.ntk
    dtype = set_precision(cfg.precision)
    streams = rng_streams(cfg.seed)
    x = jax.random.normal(streams["data"], (n.n_inputs, n.input_dim), dtype)
    k_inf = infinite_width_kernels(x, depth=n.depth, activation=n.activation, w_std=n.w_std,
                                   b_std=n.b_std).ntk
    results = []
    for index, width in enumerate(n.widths):
        model = NTKMLP((width,) * n.depth, 1, n.activation, n.w_std, n.b_std)

        def apply(p, xs, model=model):
            return model.apply({"params": p}, xs)

        kernel = jax.jit(lambda p, apply=apply: empirical_ntk(apply, p, x, method=n.method,
                                                              trace_axes=(-1,)))
        errors = []
        for s in range(n.num_seeds):
            key = jax.random.fold_in(jax.random.fold_in(streams["init"], index), s)
            params = model.init(key, x[:1])["params"]
            errors.append(relative_change(kernel(params), k_inf))
        results.append({"width": width, "errors": errors})
    return results, x


def _validate_width(cfg: Config) -> None:
    n = cfg.ntk
    check(len(n.widths) >= 2 and all(w > 0 for w in n.widths), "ntk.widths", n.widths,
          "two or more positive widths")
    check(n.depth >= 1, "ntk.depth", n.depth, "an integer >= 1")
    check(n.activation in ("relu", "erf"), "ntk.activation", n.activation, "relu | erf")
    check(n.method in ("jacobian", "ntvp"), "ntk.method", n.method, "jacobian | ntvp")
    check(n.num_seeds >= 1, "ntk.num_seeds", n.num_seeds, "an integer >= 1")
    check(n.n_inputs >= 2, "ntk.n_inputs", n.n_inputs, "an integer >= 2")
    check(n.input_dim >= 1, "ntk.input_dim", n.input_dim, "an integer >= 1")
    check(n.w_std > 0, "ntk.w_std", n.w_std, "a float > 0")


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
    for name in ("ntk_width.png", "loss.png"):  # loss.png: the run contract's loss (= rel. error) figure
        fig.savefig(figures / name, dpi=120)
    plt.close(fig)


@TASKS.register("ntk_width")
def run_ntk_width(cfg: Config, run: RunDir) -> dict:
    """Empirical NTK error vs width; rows per width, a log-log figure, the fitted slope's verdict."""
    _validate_width(cfg)
    results, _ = width_errors(cfg)
    rows = []
    for index, r in enumerate(results):
        e = np.asarray(r["errors"])
        rows.append({"step": index, "loss": float(e.mean()), "width": r["width"],
                     "rel_error": float(e.mean()), "rel_error_std": float(e.std()),
                     "rel_error_min": float(e.min()), "rel_error_max": float(e.max())})
        log.info("width %d: relative NTK error %.4g ± %.2g", r["width"], e.mean(), e.std())
    run.log(rows)
    n = cfg.ntk
    context = {"depth": n.depth, "activation": n.activation}
    summary = _finish(cfg, run, {}, context)
    slope = summary["verdict"].get("slope")
    if slope is None:  # verdict "none": fit here for the figure
        slope, _ = np.polyfit(np.log([r["width"] for r in rows]), np.log([r["rel_error"] for r in rows]), 1)
    intercept = np.mean(np.log([r["rel_error"] for r in rows]) - slope * np.log([r["width"] for r in rows]))
    plot_width(rows, float(slope), float(intercept), run.figures,
               f"{cfg.name}: depth {n.depth} {n.activation}, {n.n_inputs} inputs, {n.num_seeds} seeds")
    return {
        "status": "finished",
        "hparams": {"lr": cfg.optimizer.lr, "seed": cfg.seed, "widths": list(n.widths), "depth": n.depth,
                    "activation": n.activation, "w_std": n.w_std, "b_std": n.b_std,
                    "n_inputs": n.n_inputs, "input_dim": n.input_dim, "num_seeds": n.num_seeds,
                    "method": n.method},
        "final": {k: v for k, v in rows[-1].items() if k != "step"},
        "verdict": summary["verdict"],
    }


# --------------------------------------------------------------------------------------------- ntk

def _validate_finetune(cfg: Config) -> None:
    n = cfg.ntk
    check(cfg.data.name == "mnist1d", "data.name", cfg.data.name, "mnist1d (task ntk)")
    check(len(n.source_classes) == len(n.target_classes) >= 2, "ntk.target_classes", n.target_classes,
          f"as many classes as ntk.source_classes ({len(n.source_classes)}), at least 2")
    check(not set(n.source_classes) & set(n.target_classes), "ntk.target_classes", n.target_classes,
          "classes disjoint from ntk.source_classes")
    check(len(n.shots) >= 1 and all(k >= 1 for k in n.shots), "ntk.shots", n.shots,
          "a list of positive shot counts")
    check(n.pretrain_steps >= 1, "ntk.pretrain_steps", n.pretrain_steps, "an integer >= 1")
    check(n.pretrain_lr > 0, "ntk.pretrain_lr", n.pretrain_lr, "a float > 0")
    check(n.adam_lr > 0, "ntk.adam_lr", n.adam_lr, "a float > 0")
    check(n.kernel_ridge >= 0, "ntk.kernel_ridge", n.kernel_ridge, "a float >= 0")
    check(n.kernel_batch_size is None or n.kernel_batch_size > 0, "ntk.kernel_batch_size",
          n.kernel_batch_size, "null or an integer > 0")


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


def finetune_and_kernels(cfg: Config, apply_fn, params0, x_tr, y_tr, x_te, y_te, num_classes, key):
    """Fine-tune with SGD and Adam from ``params0`` and compare each with its kernel solution."""
    n, steps, lr = cfg.ntk, cfg.train.steps, cfg.optimizer.lr
    loss = LOSSES.get("mse")
    onehot = jax.nn.one_hot(y_tr, num_classes, dtype=x_tr.dtype)
    bs = n.kernel_batch_size
    ntk = jax.jit(lambda p, a, b: empirical_ntk(apply_fn, p, a, b, batch_size=bs))
    f0_tr, f0_te = apply_fn(params0, x_tr), apply_fn(params0, x_te)
    k0_tr = ntk(params0, x_tr, x_tr)
    k0_te = ntk(params0, x_te, x_tr)
    a_tr = asymmetric_sign_kernel(apply_fn, params0, x_tr, x_tr, batch_size=bs)
    a_te = asymmetric_sign_kernel(apply_fn, params0, x_te, x_tr, batch_size=bs)

    # SGD (full-batch GD on ½‖f − y‖², mean over examples) follows kernel GD with rate lr·O in
    # gradient_descent_mse's convention (its loss is a mean over N·O entries), for `steps` steps.
    sgd_kernel = gradient_descent_mse(k0_tr, onehot, steps, k_test_train=k0_te, fx_train_0=f0_tr,
                                      fx_test_0=f0_te, learning_rate=lr * num_classes, discrete=True)
    ridge = {"ridge": n.kernel_ridge, "ridge_scale": "spectral", "fx_train_0": f0_tr, "fx_test_0": f0_te}
    ntk_converged = kernel_regression(k0_tr, onehot, k0_te, **ridge)
    asign = kernel_regression(a_tr, onehot, a_te, **ridge)

    out, curves = {}, {}
    kernels = {"sgd": (build_optimizer("gd", lr=lr, weight_decay=0.0), sgd_kernel.test, ntk_converged.test),
               "adam": (build_optimizer("adam", lr=n.adam_lr, b1=cfg.optimizer.b1, b2=cfg.optimizer.b2,
                                        eps=cfg.optimizer.eps), asign.test, None)}
    for name, (tx, f_kernel, f_kernel_conv) in kernels.items():
        params, losses = _train(apply_fn, loss, tx, params0, x_tr, y_tr, steps, key)
        f_te = apply_fn(params, x_te)
        f_lin = linearized_apply(apply_fn, params0, params, x_te)
        moved = jnp.linalg.norm(f_te - f0_te)
        curves[name] = np.append(losses, float(loss(apply_fn(params, x_tr), y_tr)))
        out[name] = {
            "ft_test_acc": accuracy(f_te, y_te),
            "ft_train_acc": accuracy(apply_fn(params, x_tr), y_tr),
            "kernel_test_acc": accuracy(f_kernel, y_te),
            "agreement": agreement(f_te, f_kernel),
            "function_gap": float(jnp.linalg.norm(f_te - f_kernel) / moved),
            "linearization_gap": float(jnp.linalg.norm(f_te - f_lin) / moved),
            "kernel_change": relative_change(ntk(params, x_tr, x_tr), k0_tr),
            "final_train_loss": float(curves[name][-1]),
        }
        if f_kernel_conv is not None:
            out[name]["kernel_converged_test_acc"] = accuracy(f_kernel_conv, y_te)
            out[name]["agreement_converged"] = agreement(f_te, f_kernel_conv)
        if name == "sgd":
            out[name]["kernel_train_loss"] = float(loss(sgd_kernel.train, y_tr))
        out[name]["_f_te"], out[name]["_f_kernel"] = np.asarray(f_te), np.asarray(f_kernel)
    out["pretrained_test_acc"] = accuracy(f0_te, y_te)
    return out, curves


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


@TASKS.register("ntk")
def run_ntk(cfg: Config, run: RunDir) -> dict:
    """Pre-train, fine-tune k-shot with SGD and Adam, compare with the eNTK / A-SignGD kernels."""
    _validate_finetune(cfg)
    n = cfg.ntk
    dtype = set_precision(cfg.precision)
    streams = rng_streams(cfg.seed)
    data_options = {k: v for k, v in dataclasses.asdict(cfg.data).items() if k not in ("name", "classes")}
    source = build_dataset("mnist1d", streams["data"], dtype=dtype,
                           **{**data_options, "classes": list(n.source_classes)})
    target = build_dataset("mnist1d", streams["data"], dtype=dtype,
                           **{**data_options, "n_train": None, "classes": list(n.target_classes)})
    num_classes = source.num_classes
    model_options = {k: v for k, v in dataclasses.asdict(cfg.model).items() if k != "name"}
    model = build_model(cfg.model.name, source.input_shape, num_classes, **model_options)
    params = jax.tree.map(lambda p: p.astype(dtype), model.init(streams["init"]))
    loss = LOSSES.get("mse")

    pretrain_tx = build_optimizer("adam", lr=n.pretrain_lr, b1=0.9, b2=0.999, eps=1e-8)
    params0, pre_losses = _train(model.apply, loss, pretrain_tx, params, source.x_train, source.y_train,
                                 n.pretrain_steps, streams["noise"])
    source_acc = accuracy(model.apply(params0, source.x_test), source.y_test)
    log.info("%s: pre-trained %s (%d params) on classes %s: source test accuracy %.3f", cfg.name,
             cfg.model.name, num_params(params0), list(n.source_classes), source_acc)

    results, curves = {}, {}
    y_all = np.asarray(target.y_train)
    for i, k in enumerate(n.shots):
        idx = k_shot(jax.random.fold_in(streams["data"], 1000 + i), y_all, num_classes, k)
        x_tr, y_tr = target.x_train[idx], target.y_train[idx]
        results[k], curves[k] = finetune_and_kernels(cfg, model.apply, params0, x_tr, y_tr, target.x_test,
                                                     target.y_test, num_classes, streams["noise"])
        for opt in ("sgd", "adam"):
            r = results[k][opt]
            log.info("k=%d %s: FT acc %.3f, kernel acc %.3f, agreement %.3f, kernel change %.3g, "
                     "linearization gap %.3g", k, opt, r["ft_test_acc"], r["kernel_test_acc"],
                     r["agreement"], r["kernel_change"], r["linearization_gap"])

    rows = []
    first = n.shots[0]
    for t in range(cfg.train.steps + 1):
        if t % cfg.train.log_every and t != cfg.train.steps:
            continue
        row = {"step": t, "loss": float(curves[first]["sgd"][t])}
        for k in n.shots:
            for opt in ("sgd", "adam"):
                row[f"loss_{opt}_k{k}"] = float(curves[k][opt][t])
        rows.append(row)
    run.log(rows)

    plot_training(run.rows, run.figures, title=f"{cfg.name}: SGD fine-tuning, k={first}, η={cfg.optimizer.lr:g}")
    plot_finetune(results, run.figures, f"{cfg.name}: mnist1d {list(n.source_classes)} → "
                                        f"{list(n.target_classes)}")
    numbers = {f"k{k}": {opt: {m: v for m, v in results[k][opt].items() if not m.startswith("_")}
                         for opt in ("sgd", "adam")} | {"pretrained_test_acc": results[k]["pretrained_test_acc"]}
               for k in n.shots}
    context = {"optimizer": "sgd+adam", "results": numbers}
    summary = _finish(cfg, run, {}, context)
    final = {k: v for k, v in rows[-1].items() if k != "step"}
    return {
        "status": "finished",
        "steps_completed": cfg.train.steps,
        "hparams": {"lr": cfg.optimizer.lr, "adam_lr": n.adam_lr, "seed": cfg.seed, "shots": list(n.shots),
                    "steps": cfg.train.steps, "pretrain_steps": n.pretrain_steps,
                    "pretrain_lr": n.pretrain_lr, "source_classes": list(n.source_classes),
                    "target_classes": list(n.target_classes)},
        "num_params": num_params(params0),
        "source_test_acc": source_acc,
        "pretrain_final_loss": float(pre_losses[-1]),
        "final": final,
        "results": numbers,
        "verdict": summary["verdict"],
    }
