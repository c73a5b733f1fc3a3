"""A BERT / RoBERTa encoder and masked-LM head in Flax linen, numerically equal to Hugging Face's.

The architecture is the post-LayerNorm Transformer of ``BertModel`` / ``RobertaModel`` and the MLM
head of ``BertForMaskedLM`` / ``RobertaForMaskedLM`` in eval mode (no dropout):

- embeddings: ``word[ids] + position[pos] + token_type[tt]`` → LayerNorm;
- each layer: ``h = LN(h + W_o · softmax(Q Kᵀ/√d_head + mask_bias) V)``, then
  ``h = LN(h + W_2 · act(W_1 h))``;
- MLM head: ``dense → act → LayerNorm → h @ word_embeddingsᵀ + bias`` (decoder tied to the word
  embeddings, as in every released BERT / RoBERTa checkpoint).

Conventions:

- Inputs are integer arrays of shape ``(B, T)``. ``attention_mask`` is 1 for real tokens and 0 for
  padding (default: all ones); masked keys get the additive bias ``jnp.finfo(dtype).min``, as in HF.
  Padded query positions are still computed (they attend to the real tokens), as in HF.
- ``token_type_ids`` default to zeros.
- Position ids: ``family="bert"`` uses ``arange(T) + position_offset``. ``family="roberta"`` counts
  non-pad tokens (``ids != pad_id``, not the attention mask):
  ``pos = cumsum(ids != pad_id) - 1 + position_offset`` there and ``pad_id`` at pad tokens; with
  ``position_offset = pad_id + 1`` this is HF's ``create_position_ids_from_input_ids``.
- Outputs: ``Encoder`` returns hidden states ``(B, T, hidden)``; ``MaskedLM`` returns logits
  ``(B, T, vocab_size)``, and ``MaskedLM.encode`` (``model.apply(v, ids, mask, method="encode")``)
  returns its encoder's hidden states.
- Parameters are the ``params`` collection; ``MaskedLM`` holds ``{"encoder": …, "lm_head": …}``, so
  ``params["encoder"]`` is a valid ``Encoder`` parameter tree. Computation runs in the dtype of the
  parameters (cast them with ``jax.tree.map`` for float64 under ``jax_enable_x64``).

``dynamics.models.hf_checkpoint.load_hf_checkpoint`` fills these parameters from a local Hugging
Face checkpoint directory.
"""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import linen as nn

ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # HF "gelu": exact, erf-based
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),  # tanh approximation
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
}
FAMILIES = ("bert", "roberta")


@dataclass(frozen=True)
class EncoderConfig:
    """Sizes and conventions of a BERT / RoBERTa encoder (names follow HF's ``config.json``)."""

    vocab_size: int
    hidden: int = 32
    layers: int = 2
    heads: int = 2
    intermediate: int = 64
    max_len: int = 32  # number of position embeddings (HF max_position_embeddings)
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    activation: str = "gelu"  # a key of ACTIVATIONS (HF hidden_act)
    pad_id: int = 0
    position_offset: int = 0  # RoBERTa checkpoints: pad_id + 1
    family: str = "bert"  # "bert" | "roberta": how position ids are formed

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation={self.activation!r} is unknown; "
                             f"valid: {', '.join(ACTIVATIONS)}")
        if self.family not in FAMILIES:
            raise ValueError(f"family={self.family!r} is unknown; valid: {', '.join(FAMILIES)}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden={self.hidden} is not divisible by heads={self.heads}")


def position_ids(config: EncoderConfig, input_ids: jax.Array) -> jax.Array:
    """Position ids ``(B, T)`` for ``input_ids`` (see the module docstring)."""
    if config.family == "roberta":
        real = (input_ids != config.pad_id).astype(jnp.int32)
        counted = jnp.cumsum(real, axis=1) - 1 + config.position_offset
        return jnp.where(real == 1, counted, config.pad_id)
    t = input_ids.shape[1]
    return jnp.broadcast_to(jnp.arange(t) + config.position_offset, input_ids.shape)


_weight_init = nn.initializers.normal(0.02)  # HF's initializer_range


def _dense(features, name):
    return nn.Dense(features, kernel_init=_weight_init, name=name)


def _layer_norm(config, name):
    return nn.LayerNorm(epsilon=config.layer_norm_eps, name=name)


class Embeddings(nn.Module):
    config: EncoderConfig

    def setup(self):
        c = self.config
        self.word_embeddings = nn.Embed(c.vocab_size, c.hidden, embedding_init=_weight_init)
        self.position_embeddings = nn.Embed(c.max_len, c.hidden, embedding_init=_weight_init)
        self.token_type_embeddings = nn.Embed(c.type_vocab_size, c.hidden,
                                              embedding_init=_weight_init)
        self.LayerNorm = _layer_norm(c, "LayerNorm")

    def __call__(self, input_ids, token_type_ids):
        h = (self.word_embeddings(input_ids)
             + self.position_embeddings(position_ids(self.config, input_ids))
             + self.token_type_embeddings(token_type_ids))
        return self.LayerNorm(h)


class SelfAttention(nn.Module):
    config: EncoderConfig

    @nn.compact
    def __call__(self, h, mask_bias):
        c = self.config
        b, t, _ = h.shape
        d = c.hidden // c.heads

        def split(x):  # (B, T, H) -> (B, heads, T, d)
            return x.reshape(b, t, c.heads, d).transpose(0, 2, 1, 3)

        q, k, v = (split(_dense(c.hidden, n)(h)) for n in ("query", "key", "value"))
        scores = jnp.einsum("bhqd,bhkd->bhqk", q, k) / jnp.sqrt(jnp.asarray(d, q.dtype))
        probs = jax.nn.softmax(scores + mask_bias, axis=-1)
        ctx = jnp.einsum("bhqk,bhkd->bhqd", probs, v).transpose(0, 2, 1, 3).reshape(b, t, c.hidden)
        return _layer_norm(c, "LayerNorm")(h + _dense(c.hidden, "output")(ctx))


class Layer(nn.Module):
    config: EncoderConfig

    @nn.compact
    def __call__(self, h, mask_bias):
        c = self.config
        h = SelfAttention(c, name="attention")(h, mask_bias)
        ffn = ACTIVATIONS[c.activation](_dense(c.intermediate, "intermediate")(h))
        ffn = _dense(c.hidden, "output")(ffn)
        return _layer_norm(c, "output_LayerNorm")(h + ffn)


class Encoder(nn.Module):
    """``(input_ids, attention_mask=None, token_type_ids=None) -> hidden states (B, T, hidden)``."""

    config: EncoderConfig

    def setup(self):
        self.embeddings = Embeddings(self.config)
        self.layers = [Layer(self.config, name=f"layer_{i}") for i in range(self.config.layers)]

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None):
        c = self.config
        if input_ids.shape[1] + c.position_offset > c.max_len:
            raise ValueError(f"sequence length {input_ids.shape[1]} exceeds the {c.max_len} "
                             f"position embeddings (position_offset={c.position_offset})")
        if attention_mask is None:
            attention_mask = jnp.ones(input_ids.shape, jnp.int32)
        if token_type_ids is None:
            token_type_ids = jnp.zeros(input_ids.shape, jnp.int32)
        h = self.embeddings(input_ids, token_type_ids)
        # (B, 1, 1, T): 0 for real keys, the dtype's most negative number for padded keys (as HF)
        keep = attention_mask[:, None, None, :] > 0
        mask_bias = jnp.where(keep, 0.0, jnp.finfo(h.dtype).min).astype(h.dtype)
        for layer in self.layers:
            h = layer(h, mask_bias)
        return h

    def word_embedding_table(self):
        """The ``(vocab_size, hidden)`` word-embedding matrix (the tied MLM decoder)."""
        return self.embeddings.word_embeddings.embedding


class MLMHead(nn.Module):
    """``dense → act → LayerNorm → h @ tableᵀ + bias``, the BERT/RoBERTa MLM prediction head."""

    config: EncoderConfig

    @nn.compact
    def __call__(self, h, table):
        c = self.config
        h = _dense(c.hidden, "dense")(h)
        h = _layer_norm(c, "LayerNorm")(ACTIVATIONS[c.activation](h))
        bias = self.param("bias", nn.initializers.zeros, (c.vocab_size,), jnp.float32)
        return h @ table.T.astype(h.dtype) + bias


class MaskedLM(nn.Module):
    """``(input_ids, attention_mask=None, token_type_ids=None) -> logits (B, T, vocab_size)``.

    ``method="encode"`` returns the encoder's hidden states ``(B, T, hidden)`` instead.
    """

    config: EncoderConfig

    def setup(self):
        self.encoder = Encoder(self.config)
        self.lm_head = MLMHead(self.config)

    def encode(self, input_ids, attention_mask=None, token_type_ids=None):
        return self.encoder(input_ids, attention_mask, token_type_ids)

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None):
        h = self.encoder(input_ids, attention_mask, token_type_ids)
        return self.lm_head(h, self.encoder.word_embedding_table())


def init_masked_lm(config: EncoderConfig, key: jax.Array) -> dict:
    """Random float32 ``MaskedLM`` params (HF's init: N(0, 0.02²) weights, zero biases, unit LN)."""
    ids = jnp.zeros((1, 1), jnp.int32)
    return jax.jit(MaskedLM(config).init)(key, ids)["params"]
