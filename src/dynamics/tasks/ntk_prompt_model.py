"""Task ``ntk_prompt``, the model side: the tiny masked LM's two output maps (prompt: label-word logits at
``[MASK]``; head: a fresh linear head on ``[CLS]``) and its MLM pre-training on ``dynamics.data.corpus``."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dynamics.config_ntk import NTKPromptConfig
from dynamics.data import corpus
from dynamics.data.base import sample_batch
from dynamics.models.encoder import Encoder, EncoderConfig, MaskedLM

# ------------------------------------------------------------------------------------------ models

def encoder_config(n: NTKPromptConfig) -> EncoderConfig:
    """The masked LM's sizes from ``ntk.prompt.encoder_*`` (vocabulary and length from the corpus)."""
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
