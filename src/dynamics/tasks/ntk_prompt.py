"""Task ``ntk_prompt``: prompt-based vs standard fine-tuning of a tiny masked LM, seen through the eNTK.

Malladi, Wettig, Yu, Chen, Arora, "A Kernel-Based View of Language Model Fine-Tuning" (ICML 2023):
with a meaningful prompt, fine-tuning (FT) of a pre-trained masked LM follows its kernel solution
around the pre-trained θ₀ much better than standard FT with a fresh classification head on [CLS].

1. **Pre-training**: a ``MaskedLM`` (``dynamics.models.encoder``: BERT-style, tied decoder) on the
   synthetic corpus of ``dynamics.data.corpus`` (sentences, most followed by "it was great/terrible ."
   agreeing with their sentiment), masked-token cross-entropy, minibatch Adam, ``ntk.pretrain_steps``
   steps, in float32 (then cast to ``precision``).
2. **Downstream k-shot** sentiment task on fresh sentences; two variants on the same θ₀:

   - ``prompt``: input ``[CLS] <sentence> it was [MASK] . [SEP]``; f(x) = the MLM logits of the label
     words (``terrible``, ``great``) at the mask (2 outputs); parameters: the whole masked LM;
   - ``head``: input ``[CLS] <sentence> [SEP]``; f(x) = W·h_[CLS] + b, a fresh linear head
     (W ~ N(0, ``ntk.head_init_std``²), b = 0; 2 outputs); parameters: the encoder and the head (the
     head is part of the eNTK).

3. Each variant is fine-tuned on each k-shot set with full-batch **GD** (softmax cross-entropy) and
   with **Adam** (lr ``ntk.adam_lr``), each until its training loss is ≤ ``ntk.target_loss`` (checked
   every ``train.chunk`` steps; at most ``train.steps``), so both variants end equally well fitted.
   GD's lr is ``optimizer.lr``, or with ``ntk.lr_scale=kernel`` ``optimizer.lr · N / λ_max(K₀)``, the
   same step relative to each variant's own kernel scale (see :func:`gd_learning_rate`). Kernel
   solutions at θ₀: GD ↔ **kernel gradient descent** with the eNTK for the same number of steps, the
   same rate and loss (:func:`kernel_gradient_descent`, exact for the linearized model); Adam ↔ kernel
   regression with the **A-SignGD** kernel around f₀ (ridge ``ntk.kernel_ridge``·σ_max), as in task
   ``ntk``.

Reported per (k, variant, optimizer), on the test set unless noted: FT and kernel accuracy,
``agreement`` of predicted classes, ``function_gap`` ‖f_FT − f_kernel‖/‖f_FT − f₀‖,
``linearization_gap`` ‖f(θ_T) − f_lin(θ_T)‖/‖f(θ_T) − f₀‖, ``kernel_change`` ‖K(θ_T) − K(θ₀)‖/‖K(θ₀)‖
(training set), and the same three for the margin m = f_great − f_terrible (``margin_*``), the part of
f that the cross-entropy and the predicted class depend on; also f₀'s accuracy (zero-shot for the
prompt), the steps taken and GD's lr. Metrics rows: fine-tuning steps (``loss`` = prompt GD at the
first k; ``loss_{variant}_{sgd|adam|kernel_sgd}_k{k}`` for every run, absent after it stopped).
Verdict ``ntk_prompt`` (on the margin).
"""

import logging
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from dynamics.config import Config
from dynamics.data import corpus
from dynamics.data.base import sample_batch
from dynamics.errors import check
from dynamics.io import RunDir
from dynamics.losses import LOSSES
from dynamics.models import num_params
from dynamics.models.encoder import ACTIVATIONS, Encoder, EncoderConfig, MaskedLM, init_masked_lm
from dynamics.ntk import flat_jacobian, kernel_regression
from dynamics.ntk.diagnostics import accuracy, agreement, relative_change
from dynamics.plots import identity_line, plot_training
from dynamics.tasks.base import TASKS
from dynamics.tasks.ntk import k_shot
from dynamics.tasks.train import set_precision
from dynamics.train import rng_streams
from dynamics.claims import judge

log = logging.getLogger("dynamics")

VARIANTS = ("prompt", "head")
OPTIMIZERS = ("sgd", "adam")
FT_LOSSES = ("cross_entropy",)
LR_SCALES = ("absolute", "kernel")


# ------------------------------------------------------------------------------------------ models

def encoder_config(cfg: Config) -> EncoderConfig:
    """The masked LM's sizes from ``ntk.encoder_*`` (vocabulary and length from the corpus)."""
    n = cfg.ntk
    return EncoderConfig(vocab_size=len(corpus.VOCAB), hidden=n.encoder_hidden, layers=n.encoder_layers,
                         heads=n.encoder_heads, intermediate=n.encoder_intermediate, max_len=corpus.MAX_LEN,
                         activation=n.encoder_activation, pad_id=corpus.PAD)


def prompt_apply_fn(config: EncoderConfig):
    """``f(params, ids) -> (N, 2)``: MLM logits of the label words at each row's ``[MASK]``."""
    model = MaskedLM(config)
    label_ids = np.asarray(corpus.LABEL_IDS)

    def apply(params, ids):
        logits = model.apply({"params": params}, ids, (ids != corpus.PAD).astype(jnp.int32))
        pos = jnp.argmax(ids == corpus.MASK, axis=1)  # the (first) mask of each row
        at_mask = jnp.take_along_axis(logits, pos[:, None, None], axis=1)[:, 0, :]
        return at_mask[:, label_ids]

    return apply


def head_apply_fn(config: EncoderConfig):
    """``f(params, ids) -> (N, 2)``: a linear head on the encoder's ``[CLS]`` (first) hidden state.

    ``params = {"encoder": …, "head": {"kernel": (hidden, 2), "bias": (2,)}}``.
    """
    encoder = Encoder(config)

    def apply(params, ids):
        h = encoder.apply({"params": params["encoder"]}, ids, (ids != corpus.PAD).astype(jnp.int32))
        return h[:, 0, :] @ params["head"]["kernel"] + params["head"]["bias"]

    return apply


def init_head(key, hidden: int, num_classes: int, std: float, dtype) -> dict:
    """A fresh linear head: N(0, std²) weights, zero bias (BERT's classifier init with std 0.02)."""
    return {"kernel": std * jax.random.normal(key, (hidden, num_classes), dtype),
            "bias": jnp.zeros((num_classes,), dtype)}


# -------------------------------------------------------------------------------------- pre-training

def mlm_loss(config: EncoderConfig, mask_prob: float):
    """``loss(params, ids, key)``: masked-token cross-entropy with a fresh random mask.

    Each real token (not ``[PAD] [CLS] [SEP]``) is replaced by ``[MASK]`` with probability ``mask_prob``,
    and one more position per row is always masked, so every row contributes.
    """
    model = MaskedLM(config)

    def loss(params, ids, key):
        maskable = (ids != corpus.PAD) & (ids != corpus.CLS) & (ids != corpus.SEP)
        u = jax.random.uniform(key, ids.shape)
        forced = jax.nn.one_hot(jnp.argmax(jnp.where(maskable, u, -1.0), axis=1), ids.shape[1], dtype=bool)
        chosen = maskable & ((u < mask_prob) | forced)
        inputs = jnp.where(chosen, corpus.MASK, ids)
        logits = model.apply({"params": params}, inputs, (ids != corpus.PAD).astype(jnp.int32))
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, ids)
        return jnp.sum(jnp.where(chosen, ce, 0.0)) / jnp.sum(chosen)

    return loss


def pretrain(config: EncoderConfig, params, ids: jax.Array, *, steps: int, lr: float, batch_size: int,
             mask_prob: float, key, chunk: int = 100):
    """Minibatch Adam on the MLM loss; returns the final params and the per-step losses.

    Step t uses the batch ``sample_batch(key, t, …)`` and the mask key ``fold_in(key', t)``: a pure
    function of ``key``. Compiled as ``lax.scan`` chunks with params and corpus as jit arguments.
    """
    loss = mlm_loss(config, mask_prob)
    tx = optax.adam(lr)
    n = ids.shape[0]

    @jax.jit
    def run_chunk(params, opt_state, corpus_ids, key, ts):
        k_batch, k_mask = jax.random.split(key)

        def body(carry, t):
            params, opt_state = carry
            batch = corpus_ids[sample_batch(k_batch, t, n, batch_size)]
            value, grads = jax.value_and_grad(loss)(params, batch, jax.random.fold_in(k_mask, t))
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), value

        return jax.lax.scan(body, (params, opt_state), ts)

    opt_state = tx.init(params)
    losses = []
    for start in range(0, steps, chunk):
        ts = jnp.arange(start, min(start + chunk, steps))
        (params, opt_state), values = run_chunk(params, opt_state, ids, key, ts)
        losses.append(np.asarray(values))
    return params, np.concatenate(losses)


# ------------------------------------------------------------------------------ kernel solutions

def kernel_gradient_descent(k_train_train, k_test_train, f0_train, f0_test, labels, loss, lr: float,
                            steps: int):
    r"""Full-batch GD on the linearized model, in function space, for any loss.

    With :math:`g_t = \partial L/\partial f(X)` at the training outputs (``jax.grad(loss)``, so the
    loss's mean over examples is included),

    .. math::
      f_{t+1}(x) = f_t(x) - \eta \sum_{j, b} K[x, j, :, b]\, g_t[j, b],

    which is exactly what GD with rate η on :math:`f^{\mathrm{lin}}(\theta) = f_0 + J(\theta - \theta_0)`
    does to the outputs (θ moves by :math:`-\eta J(X)^\top g_t`). For ``mse`` it equals
    ``gradient_descent_mse(..., discrete=True)`` with rate η·O.

    Args:
      k_train_train: ``(N, N, O, O)`` eNTK on the training inputs.
      k_test_train: ``(N_test, N, O, O)``.
      f0_train, f0_test: outputs at θ₀, ``(N, O)`` and ``(N_test, O)``.
      labels: integer labels ``(N,)`` (``loss`` one-hot encodes them as it needs).
      loss: ``loss(outputs, labels) -> scalar`` (a ``dynamics.losses`` loss).
      lr: η.
      steps: number of GD steps.

    Returns:
      ``(f_train, f_test, losses)`` after ``steps`` steps; ``losses[t]`` is L at step t (``steps + 1``
      values).
    """
    grad = jax.grad(loss)

    def body(carry, _):
        f_tr, f_te = carry
        g = grad(f_tr, labels)
        f_tr = f_tr - lr * jnp.einsum("ijab,jb->ia", k_train_train, g)
        f_te = f_te - lr * jnp.einsum("ijab,jb->ia", k_test_train, g)
        return (f_tr, f_te), loss(carry[0], labels)

    (f_tr, f_te), losses = jax.lax.scan(body, (f0_train, f0_test), None, length=steps)
    return f_tr, f_te, jnp.append(losses, loss(f_tr, labels))


# ------------------------------------------------------------------------------------ fine-tuning

def jacobian_fn(apply_fn, block_size: int | None):
    """``jac(params, x) -> (f, J)``: outputs ``(N, O)`` and flat per-example Jacobians ``(N, O, P)``.

    ``J`` is ``dynamics.ntk.flat_jacobian``, so ``K = J₁ J₂ᵀ`` is the eNTK and ``f₀ + J (θ − θ₀)`` the
    linearized model. With ``block_size`` one compiled program handles every N (blocks of
    ``block_size`` examples, the last one padded by repeating its last example); ``None`` computes all
    examples in one call.
    """
    @jax.jit
    def block(params, xb):
        return apply_fn(params, xb), flat_jacobian(apply_fn, params, xb)

    def jac(params, x):
        n = x.shape[0]
        size = n if block_size is None else block_size
        pad = -n % size
        if pad:
            x = jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)])
        outs = [block(params, x[i:i + size]) for i in range(0, n + pad, size)]
        return (jnp.concatenate([o[0] for o in outs])[:n], jnp.concatenate([o[1] for o in outs])[:n])

    return jac


def kernel(j1: jax.Array, j2: jax.Array) -> jax.Array:
    """``K[i, j, a, b] = ⟨J1[i, a], J2[j, b]⟩``, shape ``(N1, N2, O, O)``."""
    return jnp.einsum("iap,jbp->ijab", j1, j2, precision=jax.lax.Precision.HIGHEST)


def margin(f: jax.Array) -> jax.Array:
    """The classification margin m = f_great − f_terrible (logit of class 1 minus class 0)."""
    return f[..., 1] - f[..., 0]


def margin_kernel(j: jax.Array) -> jax.Array:
    """The eNTK of the margin, ⟨∇m(x_i), ∇m(x_j)⟩ = K11 − K10 − K01 + K00, shape ``(N, N, 1, 1)``."""
    d = j[:, 1:] - j[:, :1]
    return kernel(d, d)


def make_finetune(apply_fn, loss, tx, chunk: int):
    """Jitted full-batch training in chunks: ``(init, run)``.

    ``init(params, lr=None) -> opt_state`` (``lr`` overrides the injected learning rate: a new value,
    the same compiled program); ``run(params, opt_state, x, y, w) -> (params, opt_state, losses, last)``
    takes ``chunk`` steps of ``tx`` and returns the objective before each step and after the last.
    The objective is the ``w``-weighted mean of the per-example ``loss`` (``w`` = 1 on the k-shot
    examples, 0 on padding), so one compiled program serves every k.
    """
    def objective(params, x, y, w):
        out = apply_fn(params, x)
        per_example = jax.vmap(lambda o, t: loss(o[None], t[None]))(out, y)
        return jnp.sum(w * per_example) / jnp.sum(w)

    @jax.jit
    def run(params, opt_state, x, y, w):
        def body(carry, _):
            params, opt_state = carry
            value, grads = jax.value_and_grad(objective)(params, x, y, w)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), value

        (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), None, length=chunk)
        return params, opt_state, losses, objective(params, x, y, w)

    def init(params, lr=None, **hyperparams):
        state = tx.init(params)
        for name, value in ({"learning_rate": lr} | hyperparams).items():
            if value is not None:  # an injected hyperparameter: a new value, the same compiled program
                state.hyperparams[name] = jnp.asarray(value, state.hyperparams[name].dtype)
        return state

    return init, run


def train_to_target(init, run, params, x, y, w, *, max_steps: int, chunk: int, target: float | None):
    """Train in chunks until the training loss is ≤ ``target`` (checked after each chunk) or
    ``max_steps`` (a multiple of ``chunk``); returns the params and the losses at steps 0..T.
    ``init(params) -> opt_state`` and ``run`` are :func:`make_finetune`'s."""
    state = init(params)
    curve, last = [], np.inf
    while len(curve) < max_steps and (target is None or last > target):
        params, state, losses, last = run(params, state, x, y, w)
        curve.extend(np.asarray(losses).tolist())
        last = float(last)
    return params, np.array(curve + [last])


def gd_or_adam(learning_rate, adam, b1=0.9, b2=0.999, eps=1e-8) -> optax.GradientTransformation:
    r"""GD (``adam`` = 0) or Adam (``adam`` = 1) as one transformation, so that under
    ``optax.inject_hyperparams`` both run in the same compiled program (the switch is traced).

    Updates: :math:`-\eta g` (``optax.sgd``) or :math:`-\eta\,\hat m/(\sqrt{\hat v} + \epsilon)`
    (``optax.adam``); Adam's moments are tracked in both cases (cheap).
    """
    scale = optax.scale_by_adam(b1, b2, eps)

    def update(grads, state, params=None):
        adam_dir, state = scale.update(grads, state, params)
        updates = jax.tree.map(lambda a, g: -learning_rate * jnp.where(adam > 0.5, a, g), adam_dir, grads)
        return updates, state

    return optax.GradientTransformation(scale.init, update)


def top_eigenvalue(k: jax.Array, *, shift_invariant: bool = False) -> float:
    """λ_max of an ``(N, N, O, O)`` kernel flattened to ``(N O) × (N O)``.

    ``shift_invariant``: of the kernel restricted to logit vectors summing to zero (P K P with
    P = I − 𝟙𝟙ᵀ/O on both logit axes), the only directions a softmax cross-entropy depends on.
    """
    n, _, o, _ = k.shape
    if shift_invariant:
        proj = jnp.eye(o, dtype=k.dtype) - 1.0 / o
        k = jnp.einsum("ac,ijcd,db->ijab", proj, k, proj)
    return float(jnp.linalg.eigvalsh(jnp.transpose(k, (0, 2, 1, 3)).reshape(n * o, n * o))[-1])


def gd_learning_rate(cfg: Config, lam_max: float, n: int) -> float:
    """GD's learning rate: ``optimizer.lr``, or with ``ntk.lr_scale=kernel`` ``optimizer.lr · N / λ_max``.

    With ``kernel``, ``optimizer.lr`` is the step relative to the linearized model's curvature
    λ_max(K₀)/N, the same for both variants whatever their kernel's scale (for ``cross_entropy``
    λ_max of the kernel on zero-sum logit vectors, see :func:`top_eigenvalue`): GD on the linearized
    model is stable below 2 for ``mse`` and below 4 for 2-class ``cross_entropy`` (logit Hessian ≤ ½).
    """
    if cfg.ntk.lr_scale == "kernel":
        return cfg.optimizer.lr * n / lam_max
    return cfg.optimizer.lr


def _pad_rows(a: jax.Array, n: int) -> jax.Array:
    return jnp.concatenate([a, jnp.repeat(a[-1:], n - a.shape[0], axis=0)]) if n > a.shape[0] else a


def compare(cfg: Config, apply_fn, params0, train_sets: dict, x_te, y_te) -> tuple[dict, dict]:
    """Fine-tune one variant on each k-shot set with GD and Adam; compare with the kernel solutions.

    ``train_sets`` maps a name (``k16``) to ``(x_train, y_train)``. Returns results and loss curves
    per name.
    """
    n, steps = cfg.ntk, cfg.train.steps
    loss = LOSSES.get(cfg.train.loss)
    jac = jacobian_fn(apply_fn, n.kernel_batch_size)
    flat0 = ravel_pytree(params0)[0]
    f0_te, j0_te = jac(params0, x_te)
    n_max = max(x.shape[0] for x, _ in train_sets.values())
    o = cfg.optimizer
    tx = optax.inject_hyperparams(gd_or_adam)(learning_rate=1.0, adam=0.0, b1=o.b1, b2=o.b2, eps=o.eps)
    chunk = cfg.train.chunk
    init, run = make_finetune(apply_fn, loss, tx, chunk)  # one compiled program for GD and Adam
    kgd = jax.jit(kernel_gradient_descent, static_argnames=("loss", "steps"))

    results, curves = {}, {}
    for name, (x_tr, y_tr) in train_sets.items():
        f0_tr, j0_tr = jac(params0, x_tr)
        k0_tr, k0_te = kernel(j0_tr, j0_tr), kernel(j0_te, j0_tr)
        lam_max = top_eigenvalue(k0_tr, shift_invariant=True)  # cross-entropy ignores logit shifts
        lr = gd_learning_rate(cfg, lam_max, x_tr.shape[0])
        sign_tr = jnp.sign(j0_tr)
        onehot = jax.nn.one_hot(y_tr, f0_tr.shape[1], dtype=f0_tr.dtype)
        asign = kernel_regression(kernel(j0_tr, sign_tr), onehot, kernel(j0_te, sign_tr), ridge=n.kernel_ridge,
                                  ridge_scale="spectral", fx_train_0=f0_tr, fx_test_0=f0_te).test
        del sign_tr
        w = jnp.zeros(n_max, f0_tr.dtype).at[:x_tr.shape[0]].set(1.0)
        x_pad, y_pad = _pad_rows(x_tr, n_max), _pad_rows(y_tr, n_max)
        out, curves[name] = {}, {}
        for opt in OPTIMIZERS:
            start = partial(init, lr=lr, adam=0.0) if opt == "sgd" else partial(init, lr=n.adam_lr, adam=1.0)
            params, losses = train_to_target(start, run, params0, x_pad, y_pad, w, max_steps=steps,
                                             chunk=chunk, target=n.target_loss)
            if opt == "sgd":  # kernel GD for the same number of steps
                _, f_kgd, kgd_losses = kgd(k0_tr, k0_te, f0_tr, f0_te, y_tr, loss=loss, lr=lr,
                                           steps=len(losses) - 1)
                curves[name]["kernel_sgd"] = np.asarray(kgd_losses)
            f_kernel = f_kgd if opt == "sgd" else asign
            f_tr, j_tr = jac(params, x_tr)
            f_te, _ = jac(params, x_te)
            f_lin = f0_te + jnp.einsum("iap,p->ia", j0_te, ravel_pytree(params)[0] - flat0)
            moved = jnp.linalg.norm(f_te - f0_te)
            m_moved = jnp.linalg.norm(margin(f_te) - margin(f0_te))
            curves[name][opt] = np.asarray(losses)
            out[opt] = {
                "ft_test_acc": accuracy(f_te, y_te),
                "ft_train_acc": accuracy(f_tr, y_tr),
                "kernel_test_acc": accuracy(f_kernel, y_te),
                "agreement": agreement(f_te, f_kernel),
                "function_gap": float(jnp.linalg.norm(f_te - f_kernel) / moved),
                "function_moved": float(moved / jnp.linalg.norm(f0_te)),
                "linearization_gap": float(jnp.linalg.norm(f_te - f_lin) / moved),
                "kernel_change": relative_change(kernel(j_tr, j_tr), k0_tr),
                "final_train_loss": float(losses[-1]),
                "steps": len(losses) - 1,
                "margin_function_gap": float(jnp.linalg.norm(margin(f_te - f_kernel)) / m_moved),
                "margin_linearization_gap": float(jnp.linalg.norm(margin(f_te - f_lin)) / m_moved),
                "margin_kernel_change": relative_change(margin_kernel(j_tr), margin_kernel(j0_tr)),
                "_f_te": np.asarray(f_te), "_f_kernel": np.asarray(f_kernel),
            }
            del j_tr
        out["sgd"]["kernel_train_loss"] = float(kgd_losses[-1])
        out["sgd"]["lr"] = lr
        out["adam"]["lr"] = n.adam_lr
        out["kernel_lambda_max_over_n"] = lam_max / x_tr.shape[0]
        out["f0_test_acc"] = accuracy(f0_te, y_te)
        out["_f0_te"] = np.asarray(f0_te)
        results[name] = out
    return results, curves


def _validate(cfg: Config) -> None:
    n = cfg.ntk
    check(cfg.train.steps % cfg.train.chunk == 0, "train.steps", cfg.train.steps,
          f"a multiple of train.chunk = {cfg.train.chunk} (task ntk_prompt)")
    check(n.target_loss is None or n.target_loss > 0, "ntk.target_loss", n.target_loss,
          "null or a float > 0")
    check(cfg.train.loss in FT_LOSSES, "train.loss", cfg.train.loss,
          " | ".join(FT_LOSSES) + " (task ntk_prompt)")
    check(len(n.shots) >= 1 and all(k >= 1 for k in n.shots), "ntk.shots", n.shots,
          "a list of positive shot counts")
    pool = cfg.data.n_train if cfg.data.n_train is not None else n.downstream_pool
    check(pool >= 2 and max(n.shots) <= pool // 2, "data.n_train", cfg.data.n_train,
          f"null or an integer >= 2·max(ntk.shots) = {2 * max(n.shots)} (the k-shot pool)")
    check(n.downstream_pool >= 2, "ntk.downstream_pool", n.downstream_pool, "an integer >= 2")
    check(n.test_size >= 2, "ntk.test_size", n.test_size, "an integer >= 2")
    check(n.corpus_size >= 1, "ntk.corpus_size", n.corpus_size, "an integer >= 1")
    check(0 <= n.template_fraction <= 1, "ntk.template_fraction", n.template_fraction,
          "a float in [0, 1]")
    check(0 <= n.other_fraction <= 1 - n.template_fraction, "ntk.other_fraction", n.other_fraction,
          f"a float in [0, 1 − ntk.template_fraction = {1 - n.template_fraction:g}]")
    for key in ("encoder_hidden", "encoder_layers", "encoder_heads", "encoder_intermediate",
                "pretrain_steps", "pretrain_batch_size"):
        check(getattr(n, key) >= 1, f"ntk.{key}", getattr(n, key), "an integer >= 1")
    check(n.encoder_hidden % n.encoder_heads == 0, "ntk.encoder_heads", n.encoder_heads,
          f"a divisor of ntk.encoder_hidden = {n.encoder_hidden}")
    check(n.encoder_activation in ACTIVATIONS, "ntk.encoder_activation", n.encoder_activation,
          " | ".join(ACTIVATIONS))
    check(0 < n.mask_prob < 1, "ntk.mask_prob", n.mask_prob, "a float in (0, 1)")
    check(n.pretrain_lr > 0, "ntk.pretrain_lr", n.pretrain_lr, "a float > 0")
    check(n.adam_lr > 0, "ntk.adam_lr", n.adam_lr, "a float > 0")
    check(n.head_init_std >= 0, "ntk.head_init_std", n.head_init_std, "a float >= 0")
    check(n.lr_scale in LR_SCALES, "ntk.lr_scale", n.lr_scale, " | ".join(LR_SCALES))
    check(n.kernel_ridge >= 0, "ntk.kernel_ridge", n.kernel_ridge, "a float >= 0")
    check(n.kernel_batch_size is None or n.kernel_batch_size > 0, "ntk.kernel_batch_size",
          n.kernel_batch_size, "null or an integer > 0")


def plot_prompt(results: dict, figures, title: str) -> None:
    """``ntk_prompt.png``: accuracies, kernel-tracking gaps (margin) and per-example margins."""
    import matplotlib.pyplot as plt

    figures.mkdir(parents=True, exist_ok=True)
    shots = sorted(results, key=lambda s: int(s[1:]))
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    panels = (
        (axes[0, 0], [("sgd", "GD"), ("adam", "Adam")],
         {"fine-tuning acc": "ft_test_acc", "kernel acc": "kernel_test_acc", "agreement": "agreement"},
         "test accuracy / agreement", (0.4, 1.02)),
        (axes[0, 1], [("sgd", "GD")],
         {"‖m_FT − m_kernel‖/‖m_FT − m₀‖": "margin_function_gap",
          "‖m_FT − m_lin‖/‖m_FT − m₀‖": "margin_linearization_gap",
          "‖K_m(θ_T) − K_m(θ₀)‖/‖K_m(θ₀)‖": "margin_kernel_change"},
         "relative gap (margin m = f_great − f_terrible)", None),
    )
    for ax, opts, metrics, ylabel, ylim in panels:
        labels, values = [], {name: [] for name in metrics}
        for k in shots:
            for v in VARIANTS:
                for opt, what in opts:
                    labels.append(f"{v} {k}\n{what}")
                    for name, key in metrics.items():
                        values[name].append(results[k][v][opt][key])
        pos = np.arange(len(labels))
        width = 0.8 / len(metrics)
        for i, (name, vals) in enumerate(values.items()):
            ax.bar(pos + (i - (len(metrics) - 1) / 2) * width, vals, width, label=name)
        ax.set_xticks(pos, labels, fontsize=7)
        ax.set(ylabel=ylabel)
        if ylim is None:
            ax.set_yscale("log")
        else:
            ax.set_ylim(*ylim)
            ax.axhline(0.5, color="k", lw=0.6, ls=":")
        ax.legend(fontsize=7, loc="upper left")
    axes[0, 0].set_title(f"{title}\nkernel: GD ↔ eNTK kernel GD, Adam ↔ A-SignGD regression", fontsize=10)
    axes[0, 1].set_title("GD vs eNTK kernel GD: how far the kernel is from fine-tuning", fontsize=10)
    k = shots[-1]
    for ax, v in zip(axes[1], VARIANTS):
        r = results[k][v]["sgd"]
        m0 = margin(results[k][v]["_f0_te"])
        ax.scatter(margin(r["_f_kernel"]) - m0, margin(r["_f_te"]) - m0, s=5, alpha=0.5)
        identity_line(ax)
        ax.set(xlabel="kernel GD: m − m₀ (test)", ylabel="GD fine-tuning: m − m₀ (test)",
               title=f"{v}, {k} ({r['steps']} steps): margin gap {r['margin_function_gap']:.2f}, "
                     f"agreement {r['agreement']:.2f}")
    fig.tight_layout()
    fig.savefig(figures / "ntk_prompt.png", dpi=110)
    plt.close(fig)


@TASKS.register("ntk_prompt")
def run_ntk_prompt(cfg: Config, run: RunDir) -> dict:
    """Pre-train a tiny MLM, fine-tune k-shot with a prompt and with a head, compare with kernels."""
    _validate(cfg)
    n = cfg.ntk
    dtype = set_precision(cfg.precision)
    streams = rng_streams(cfg.seed)
    config = encoder_config(cfg)

    start = time.perf_counter()
    ids = jnp.asarray(corpus.pretraining_corpus(cfg.seed, n.corpus_size,
                                                template_fraction=n.template_fraction,
                                                other_fraction=n.other_fraction))
    params = jax.tree.map(lambda p: p.astype(jnp.float32), init_masked_lm(config, streams["init"]))
    mlm, pre_losses = pretrain(config, params, ids, steps=n.pretrain_steps, lr=n.pretrain_lr,
                               batch_size=min(n.pretrain_batch_size, n.corpus_size),
                               mask_prob=n.mask_prob, key=jax.random.fold_in(streams["noise"], 1))
    mlm = jax.tree.map(lambda p: p.astype(dtype), mlm)  # pre-trained in float32, then the run's precision
    log.info("%s: pre-trained a masked LM (%d params) for %d steps in %.1f s: MLM loss %.3f → %.3f",
             cfg.name, num_params(mlm), n.pretrain_steps, time.perf_counter() - start,
             pre_losses[:10].mean(), pre_losses[-50:].mean())

    pool = corpus.downstream(cfg.seed, "train", cfg.data.n_train or n.downstream_pool)
    test = corpus.downstream(cfg.seed, "test", cfg.data.n_test or n.test_size)
    y_te = jnp.asarray(test.labels)
    inputs = {"prompt": (corpus.prompt_inputs, prompt_apply_fn(config)),
              "head": (corpus.plain_inputs, head_apply_fn(config))}
    params0 = {"prompt": mlm,
               "head": {"encoder": mlm["encoder"],
                        "head": init_head(jax.random.fold_in(streams["init"], 1), config.hidden,
                                          len(corpus.LABEL_WORDS), n.head_init_std, dtype)}}

    shots_idx = {f"k{k}": k_shot(jax.random.fold_in(streams["data"], 1000 + i), pool.labels, 2, k)
                 for i, k in enumerate(n.shots)}
    results = {name: {} for name in shots_idx}
    curves = {name: {} for name in shots_idx}
    for v in VARIANTS:
        make_inputs, apply_fn = inputs[v]
        train_sets = {name: (jnp.asarray(make_inputs([pool.sentences[j] for j in idx])),
                             jnp.asarray(pool.labels[idx])) for name, idx in shots_idx.items()}
        start = time.perf_counter()
        x_te = jnp.asarray(make_inputs(test.sentences))
        out, curve = compare(cfg, apply_fn, params0[v], train_sets, x_te, y_te)
        for name in shots_idx:
            results[name][v], curves[name][v] = out[name], curve[name]
            for opt in OPTIMIZERS:
                r = out[name][opt]
                log.info("%s %s %s (%d steps): FT acc %.3f, kernel acc %.3f, agreement %.3f; margin: "
                         "function gap %.3g, kernel change %.3g, linearization gap %.3g (f0 acc %.3f)",
                         name, v, opt, r["steps"], r["ft_test_acc"], r["kernel_test_acc"], r["agreement"],
                         r["margin_function_gap"], r["margin_kernel_change"],
                         r["margin_linearization_gap"], out[name]["f0_test_acc"])
        log.info("%s variant: %.1f s", v, time.perf_counter() - start)
        zero_shot = out[f"k{n.shots[0]}"]["f0_test_acc"]
        if v == "prompt" and zero_shot < 0.6:
            log.warning("the prompt's zero-shot test accuracy is %.2f: the masked LM has not learned the "
                        "template (more ntk.pretrain_steps?)", zero_shot)

    # one row per step up to the longest run; a run that stopped earlier (target loss) has no value
    rows = []
    first = curves[f"k{n.shots[0]}"]["prompt"]["sgd"]
    longest = max(len(c) for by_v in curves.values() for by_c in by_v.values() for c in by_c.values())
    for t in range(longest):
        if t % cfg.train.log_every and t != longest - 1:
            continue
        row = {"step": t, "loss": float(first[t]) if t < len(first) else None}
        for name in curves:
            for v in VARIANTS:
                for curve, values in curves[name][v].items():
                    if t < len(values):
                        row[f"loss_{v}_{curve}_{name}"] = float(values[t])
        rows.append(row)
    run.log(rows)

    plot_training(run.rows, run.figures, title=f"{cfg.name}: prompt GD fine-tuning, k={n.shots[0]}")
    plot_prompt(results, run.figures, f"{cfg.name}: prompt vs [CLS] head (seed {cfg.seed})")
    def public(d):
        return {m: x for m, x in d.items() if m not in OPTIMIZERS and not m.startswith("_")}

    numbers = {k: {v: {opt: public(r[v][opt]) for opt in OPTIMIZERS} | public(r[v]) for v in VARIANTS}
               for k, r in results.items()}
    verdict = judge(cfg.claim.name, run.rows, {"results": numbers}, cfg.claim.criteria)
    return {
        "status": "finished",
        "hparams": {"lr": cfg.optimizer.lr, "lr_scale": n.lr_scale, "adam_lr": n.adam_lr, "seed": cfg.seed,
                    "shots": list(n.shots), "max_steps": cfg.train.steps, "target_loss": n.target_loss,
                    "loss": cfg.train.loss, "pretrain_steps": n.pretrain_steps, "pretrain_lr": n.pretrain_lr,
                    "pretrain_batch_size": n.pretrain_batch_size, "corpus_size": n.corpus_size,
                    "template_fraction": n.template_fraction, "other_fraction": n.other_fraction,
                    "encoder": {"hidden": config.hidden, "layers": config.layers, "heads": config.heads,
                                "intermediate": config.intermediate, "vocab_size": config.vocab_size},
                    "head_init_std": n.head_init_std, "n_pool": len(pool.labels), "n_test": len(test.labels)},
        "num_params": {"mlm": num_params(mlm), "head_variant": num_params(params0["head"])},
        "pretrain_loss": {"first10": float(pre_losses[:10].mean()),
                          "last50": float(pre_losses[-50:].mean())},
        "final": {k: v for k, v in rows[-1].items() if k != "step"},
        "results": numbers,
        "verdict": verdict,
    }
