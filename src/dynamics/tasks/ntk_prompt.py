"""Task ``ntk_prompt``: prompt-based fine-tuning of a tiny masked LM, seen through the eNTK.

Malladi, Wettig, Yu, Chen, Arora, "A Kernel-Based View of Language Model Fine-Tuning" (ICML 2023): with a
meaningful prompt, fine-tuning (FT) of a pre-trained masked LM follows kernel dynamics around the
pre-trained θ₀ (the eNTK solution's accuracy is close to FT's, and FT stays near its linearization);
"a meaningful prompt is crucial" for this.

1. **Pre-training** (``ntk_prompt_model``): a BERT-style ``MaskedLM`` on the synthetic corpus of
   ``dynamics.data.corpus`` (sentences, most followed by "it was great/terrible ." agreeing with their
   sentiment), masked-token cross-entropy, minibatch Adam, in float32 (then cast to ``precision``). The
   **control** MLM is pre-trained the same way on a corpus with ``ntk.prompt.control_template_fraction``
   (0: it never shows the template, so the prompt is meaningless).
2. **Downstream k-shot** sentiment task on fresh sentences; three variants: ``prompt`` (f = the
   label-word logits at ``[MASK]`` of "<sentence> it was [MASK] ."), ``head`` (f = a fresh linear head on
   ``[CLS]`` of the same θ₀; the head is part of the eNTK; reported, not judged, run with
   ``ntk.prompt.reported`` ∋ ``head``) and ``control`` (the prompt on the control MLM).
3. Each variant is fine-tuned on each k-shot set with full-batch **GD** (softmax cross-entropy) for
   ``train.steps`` steps (a fixed budget, as the paper's fixed number of FT steps), and, with
   ``ntk.prompt.reported`` ∋ ``adam``, the prompt and head also with **Adam** (``ntk.prompt.adam_lr``).
   GD's step is ``ntk.prompt.relative_lr · N / λ_max(K₀)`` (each variant's own kernel scale), or
   ``optimizer.lr`` with ``relative_lr=null``. Kernel solutions at θ₀ (``ntk_prompt_kernels``): GD ↔
   kernel GD with the eNTK for the same steps, rate and loss; Adam ↔ A-SignGD kernel regression around
   f₀ (reported, not judged).

Reported per (k, variant, optimizer), on the test set unless noted: FT and kernel accuracy,
``accuracy_gap`` (FT − kernel), ``agreement``, ``function_gap`` ‖f_FT − f_kernel‖/‖f_FT − f₀‖,
``linearization_gap``, ``kernel_change`` (training set), the same three on the margin (``margin_*``),
``margin_moved`` (RMS test-margin change), ``train_margin_moved``, ``ft_train_acc``, steps, GD's step;
f₀'s test / train accuracy. Metrics rows: fine-tuning steps (``loss`` = prompt GD at the first k;
``loss_{variant}_{sgd|adam|kernel_sgd}_k{k}``). Claim ``ntk_prompt`` (``dynamics.claims.ntk``).
"""

import logging
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from dynamics.claims import judge
from dynamics.config import Config
from dynamics.config_ntk import validate_prompt
from dynamics.data import corpus
from dynamics.errors import check
from dynamics.io import RunDir
from dynamics.losses import LOSSES
from dynamics.models import num_params
from dynamics.ntk import kernel_regression
from dynamics.ntk.diagnostics import accuracy, agreement, relative_change
from dynamics.plots import plot_training
from dynamics.tasks.base import TASK_CHECKS, TASKS
from dynamics.tasks.ntk import k_shot
from dynamics.tasks.ntk_prompt_kernels import (gd_learning_rate, gd_or_adam, jacobian_fn, kernel,
                                               kernel_gradient_descent, make_finetune, margin, margin_kernel,
                                               pad_rows, rms, top_eigenvalue, train_until)
from dynamics.models.encoder import init_masked_lm
from dynamics.tasks.ntk_prompt_model import encoder_config, head_apply_fn, init_head, pretrain, prompt_apply_fn
from dynamics.tasks.ntk_prompt_plot import plot_prompt
from dynamics.tasks.train import set_precision
from dynamics.train import rng_streams

log = logging.getLogger("dynamics")

OPTIMIZERS = ("sgd", "adam")
FT_LOSSES = ("cross_entropy",)


def _at_init(cfg: Config, jac, params0, x_tr, y_tr, j0_te, f0_te) -> dict:
    """Outputs, Jacobians and kernels at θ₀ on one k-shot set; GD's step; the A-SignGD solution."""
    n = cfg.ntk.prompt
    f0_tr, j0_tr = jac(params0, x_tr)
    k0_tr = kernel(j0_tr, j0_tr)
    lam_max = top_eigenvalue(k0_tr, shift_invariant=True)  # cross-entropy ignores logit shifts
    sign_tr = jnp.sign(j0_tr)
    onehot = jax.nn.one_hot(y_tr, f0_tr.shape[1], dtype=f0_tr.dtype)
    asign = kernel_regression(kernel(j0_tr, sign_tr), onehot, kernel(j0_te, sign_tr), ridge=n.kernel_ridge,
                              ridge_scale="spectral", fx_train_0=f0_tr, fx_test_0=f0_te).test
    return {"f0_tr": f0_tr, "j0_tr": j0_tr, "k0_tr": k0_tr, "k0_te": kernel(j0_te, j0_tr), "asign": asign,
            "lam_max": lam_max,
            "lr": gd_learning_rate(n.relative_lr, cfg.optimizer.lr, lam_max, x_tr.shape[0])}


def _metrics(jac, params, flat0, init: dict, x_tr, y_tr, x_te, y_te, f0_te, j0_te, f_kernel) -> dict:
    """How far fine-tuning (``params``) is from the kernel solution ``f_kernel`` and from θ₀."""
    f_tr, j_tr = jac(params, x_tr)
    f_te, _ = jac(params, x_te)
    f_lin = f0_te + jnp.einsum("iap,p->ia", j0_te, ravel_pytree(params)[0] - flat0)
    moved = jnp.linalg.norm(f_te - f0_te)
    m_moved = jnp.linalg.norm(margin(f_te) - margin(f0_te))
    return {
        "ft_test_acc": accuracy(f_te, y_te),
        "ft_train_acc": accuracy(f_tr, y_tr),
        "kernel_test_acc": accuracy(f_kernel, y_te),
        "agreement": agreement(f_te, f_kernel),
        "function_gap": float(jnp.linalg.norm(f_te - f_kernel) / moved),
        "function_moved": float(moved / jnp.linalg.norm(f0_te)),
        "linearization_gap": float(jnp.linalg.norm(f_te - f_lin) / moved),
        "kernel_change": relative_change(kernel(j_tr, j_tr), init["k0_tr"]),
        "margin_function_gap": float(jnp.linalg.norm(margin(f_te - f_kernel)) / m_moved),
        "margin_linearization_gap": float(jnp.linalg.norm(margin(f_te - f_lin)) / m_moved),
        "margin_kernel_change": relative_change(margin_kernel(j_tr), margin_kernel(init["j0_tr"])),
        "margin_moved": rms(margin(f_te) - margin(f0_te)),
        "train_margin_moved": rms(margin(f_tr) - margin(init["f0_tr"])),
        "_f_te": np.asarray(f_te), "_f_kernel": np.asarray(f_kernel),
    }


def compare(cfg: Config, apply_fn, params0, train_sets: dict, x_te, y_te,
            optimizers=OPTIMIZERS) -> tuple[dict, dict]:
    """Fine-tune one variant on each k-shot set with GD (and Adam) for ``train.steps`` full-batch steps;
    compare with the kernel solutions at θ₀. ``train_sets`` maps a name (``k16``) to ``(x_train,
    y_train)``. Returns results and loss curves per name."""
    n, steps = cfg.ntk.prompt, cfg.train.steps
    loss = LOSSES.get(cfg.train.loss)
    jac = jacobian_fn(apply_fn, n.kernel_batch_size)
    flat0 = ravel_pytree(params0)[0]
    f0_te, j0_te = jac(params0, x_te)
    n_max = max(x.shape[0] for x, _ in train_sets.values())
    o = cfg.optimizer
    tx = optax.inject_hyperparams(gd_or_adam)(learning_rate=1.0, adam=0.0, b1=o.b1, b2=o.b2, eps=o.eps)
    init, run = make_finetune(apply_fn, loss, tx, cfg.train.chunk)  # one compiled program for GD and Adam
    kgd = jax.jit(kernel_gradient_descent, static_argnames=("loss", "steps"))

    results, curves = {}, {}
    for name, (x_tr, y_tr) in train_sets.items():
        at0 = _at_init(cfg, jac, params0, x_tr, y_tr, j0_te, f0_te)
        w = jnp.zeros(n_max, f0_te.dtype).at[:x_tr.shape[0]].set(1.0)
        x_pad, y_pad = pad_rows(x_tr, n_max), pad_rows(y_tr, n_max)
        out, curves[name] = {}, {}
        for opt in optimizers:
            start = (partial(init, lr=at0["lr"], adam=0.0) if opt == "sgd"
                     else partial(init, lr=n.adam_lr, adam=1.0))
            params, losses, _ = train_until(start, run, params0, x_pad, y_pad, w, max_steps=steps,
                                            stop=lambda params, loss: False)  # a fixed budget
            if opt == "sgd":  # kernel GD for the same number of steps, at the same rate, on the same loss
                _, f_kernel, kgd_losses = kgd(at0["k0_tr"], at0["k0_te"], at0["f0_tr"], f0_te, y_tr, loss=loss,
                                              lr=at0["lr"], steps=len(losses) - 1)
                curves[name]["kernel_sgd"] = np.asarray(kgd_losses)
            else:
                f_kernel = at0["asign"]
            curves[name][opt] = np.asarray(losses)
            out[opt] = _metrics(jac, params, flat0, at0, x_tr, y_tr, x_te, y_te, f0_te, j0_te, f_kernel)
            out[opt] |= {"final_train_loss": float(losses[-1]), "steps": len(losses) - 1,
                         "accuracy_gap": out[opt]["ft_test_acc"] - out[opt]["kernel_test_acc"]}
        if "sgd" in out:
            out["sgd"] |= {"kernel_train_loss": float(kgd_losses[-1]), "lr": at0["lr"]}
        if "adam" in out:
            out["adam"]["lr"] = n.adam_lr
        out |= {"kernel_lambda_max_over_n": at0["lam_max"] / x_tr.shape[0], "f0_test_acc": accuracy(f0_te, y_te),
                "f0_train_acc": accuracy(at0["f0_tr"], y_tr), "f0_train_loss": float(loss(at0["f0_tr"], y_tr)),
                "_f0_te": np.asarray(f0_te)}
        results[name] = out
    return results, curves


@TASK_CHECKS.register("ntk_prompt")
def _validate(cfg: Config) -> None:
    validate_prompt(cfg.ntk.prompt, cfg.data.n_train)
    check(cfg.train.steps % cfg.train.chunk == 0, "train.steps", cfg.train.steps,
          f"a multiple of train.chunk = {cfg.train.chunk} (task ntk_prompt)")
    check(cfg.train.loss in FT_LOSSES, "train.loss", cfg.train.loss,
          " | ".join(FT_LOSSES) + " (task ntk_prompt)")


def pretrained_mlm(cfg: Config, config, streams, dtype, template_fraction: float | None = None):
    """The masked LM pre-trained on the corpus of ``cfg.seed`` (float32, then ``dtype``) and its losses.

    ``template_fraction`` (default ``ntk.prompt.template_fraction``) sets how often the corpus shows the
    template; the control arm passes ``ntk.prompt.control_template_fraction``. The initial weights and
    the minibatch / mask keys are the same for both."""
    n = cfg.ntk.prompt
    start = time.perf_counter()
    fraction = n.template_fraction if template_fraction is None else template_fraction
    ids = jnp.asarray(corpus.pretraining_corpus(cfg.seed, n.corpus_size, template_fraction=fraction,
                                                other_fraction=n.other_fraction))
    params = jax.tree.map(lambda p: p.astype(jnp.float32), init_masked_lm(config, streams["init"]))
    mlm, losses = pretrain(config, params, ids, steps=n.pretrain_steps, lr=n.pretrain_lr,
                           batch_size=min(n.pretrain_batch_size, n.corpus_size), mask_prob=n.mask_prob,
                           key=jax.random.fold_in(streams["noise"], 1))
    log.info("%s: pre-trained a masked LM (%d params, template fraction %g) for %d steps in %.1f s: MLM loss "
             "%.3f → %.3f", cfg.name, num_params(mlm), fraction, n.pretrain_steps, time.perf_counter() - start,
             losses[:10].mean(), losses[-50:].mean())
    return jax.tree.map(lambda p: p.astype(dtype), mlm), losses


def _log_rows(cfg: Config, run: RunDir, curves: dict) -> list[dict]:
    """One row per step (every ``train.log_every``, and the last); every run has ``train.steps`` + 1 values."""
    first = curves[f"k{cfg.ntk.prompt.shots[0]}"]["prompt"]["sgd"]
    longest = max(len(c) for by_v in curves.values() for by_c in by_v.values() for c in by_c.values())
    rows = []
    for t in range(longest):
        if t % cfg.train.log_every and t != longest - 1:
            continue
        row = {"step": t, "loss": float(first[t]) if t < len(first) else None}
        for name, by_variant in curves.items():
            for v, by_curve in by_variant.items():
                for curve, values in by_curve.items():
                    if t < len(values):
                        row[f"loss_{v}_{curve}_{name}"] = float(values[t])
        rows.append(row)
    run.log(rows)
    return rows


def _run_variants(cfg: Config, config, mlms: dict, streams, dtype) -> tuple[dict, dict, dict]:
    """Every variant on every k-shot set: results, loss curves and the data sizes. ``mlms`` maps
    ``default`` (and ``control``, when there is one) to a pre-trained masked LM."""
    n = cfg.ntk.prompt
    pool = corpus.downstream(cfg.seed, "train", cfg.data.n_train or n.downstream_pool)
    test = corpus.downstream(cfg.seed, "test", cfg.data.n_test or n.test_size)
    y_te = jnp.asarray(test.labels)
    head = {"encoder": mlms["default"]["encoder"],
            "head": init_head(jax.random.fold_in(streams["init"], 1), config.hidden, len(corpus.LABEL_WORDS),
                              n.head_init_std, dtype)}
    optimizers = OPTIMIZERS if "adam" in n.reported else ("sgd",)
    # variant -> (inputs, f, θ₀, optimizers); the control is judged on GD only; the head is reported
    variants = {"prompt": (corpus.prompt_inputs, prompt_apply_fn(config), mlms["default"], optimizers)}
    if "head" in n.reported:
        variants["head"] = (corpus.plain_inputs, head_apply_fn(config), head, optimizers)
    if "control" in mlms:
        variants["control"] = (corpus.prompt_inputs, prompt_apply_fn(config), mlms["control"], ("sgd",))
    shots_idx = {f"k{k}": k_shot(jax.random.fold_in(streams["data"], 1000 + i), pool.labels, 2, k)
                 for i, k in enumerate(n.shots)}
    results, curves = {name: {} for name in shots_idx}, {name: {} for name in shots_idx}
    for v, (make_inputs, apply_fn, params0, optimizers) in variants.items():
        train_sets = {name: (jnp.asarray(make_inputs([pool.sentences[j] for j in idx])),
                             jnp.asarray(pool.labels[idx])) for name, idx in shots_idx.items()}
        start = time.perf_counter()
        out, curve = compare(cfg, apply_fn, params0, train_sets, jnp.asarray(make_inputs(test.sentences)), y_te,
                             optimizers)
        for name in shots_idx:
            results[name][v], curves[name][v] = out[name], curve[name]
            for opt in optimizers:
                r = out[name][opt]
                log.info("%s %s %s (%d steps, margin moved %.3g): FT acc %.3f, kernel acc %.3f, agreement "
                         "%.3f; margin gap %.3g, linearization gap %.3g, kernel change %.3g (f0 acc %.3f)", name,
                         v, opt, r["steps"], r["margin_moved"], r["ft_test_acc"], r["kernel_test_acc"],
                         r["agreement"], r["margin_function_gap"], r["margin_linearization_gap"],
                         r["margin_kernel_change"], out[name]["f0_test_acc"])
        log.info("%s variant: %.1f s", v, time.perf_counter() - start)
    hparams = {"n_pool": len(pool.labels), "n_test": len(test.labels), "head_variant_params": num_params(head)}
    return results, curves, hparams


@TASKS.register("ntk_prompt")
def run_ntk_prompt(cfg: Config, run: RunDir) -> dict:
    """Pre-train a tiny MLM, fine-tune k-shot with a prompt and with a head, compare with kernels."""
    n = cfg.ntk.prompt
    dtype = set_precision(cfg.precision)
    streams = rng_streams(cfg.seed)
    config = encoder_config(n)
    mlm, pre_losses = pretrained_mlm(cfg, config, streams, dtype)
    mlms = {"default": mlm}
    if n.control_template_fraction is not None:
        mlms["control"], _ = pretrained_mlm(cfg, config, streams, dtype, n.control_template_fraction)
    results, curves, sizes = _run_variants(cfg, config, mlms, streams, dtype)
    zero_shot = results[f"k{n.shots[0]}"]["prompt"]["f0_test_acc"]
    if zero_shot < 0.6:
        log.warning("the prompt's zero-shot test accuracy is %.2f: the masked LM has not learned the "
                    "template (more ntk.prompt.pretrain_steps?)", zero_shot)
    rows = _log_rows(cfg, run, curves)
    plot_training(run.rows, run.figures, title=f"{cfg.name}: prompt GD fine-tuning, k={n.shots[0]}")
    shown = " vs ".join(v for v in ("prompt", "control", "head") if v in results[f"k{n.shots[0]}"])
    plot_prompt(results, run.figures, f"{cfg.name}: {shown} (seed {cfg.seed})")

    def public(d):
        return {m: x for m, x in d.items() if m not in OPTIMIZERS and not m.startswith("_")}

    numbers = {k: {v: {opt: public(r[v][opt]) for opt in OPTIMIZERS if opt in r[v]} | public(r[v]) for v in r}
               for k, r in results.items()}
    verdict = judge(cfg.claim.name, run.rows, {"results": numbers}, cfg.claim.criteria)
    return {
        "status": "finished",
        "hparams": {"lr": cfg.optimizer.lr, "relative_lr": n.relative_lr,
                    "control_template_fraction": n.control_template_fraction,
                    "adam_lr": n.adam_lr, "reported": list(n.reported), "seed": cfg.seed, "shots": list(n.shots),
                    "max_steps": cfg.train.steps,
                    "loss": cfg.train.loss, "pretrain_steps": n.pretrain_steps, "pretrain_lr": n.pretrain_lr,
                    "corpus_size": n.corpus_size, "template_fraction": n.template_fraction,
                    "encoder": {"hidden": config.hidden, "layers": config.layers, "heads": config.heads,
                                "intermediate": config.intermediate, "vocab_size": config.vocab_size},
                    "head_init_std": n.head_init_std, **sizes},
        "num_params": num_params(mlm),
        "pretrain_loss": {"first10": float(pre_losses[:10].mean()), "last50": float(pre_losses[-50:].mean())},
        "final": {k: v for k, v in rows[-1].items() if k != "step"},
        "results": numbers,
        "verdict": verdict,
    }
