"""BERT / RoBERTa encoder and HF checkpoint loader against golden values from HF transformers.

``tests/data/hf_reference.npz`` is written by ``tools/hf_reference.py`` (torch 2.13.0, transformers
5.23.0, float64): tiny random ``BertForMaskedLM`` / ``RobertaForMaskedLM`` weights as saved by
``save_pretrained``, their ``config.json``, padded inputs, last hidden states and MLM logits.
Each test writes its own checkpoint directory from these, so no hub access is needed.
"""

import json
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from dynamics.models.encoder import (Encoder, EncoderConfig, MaskedLM, init_masked_lm,
                                     position_ids)
from dynamics.models.hf_checkpoint import load_hf_checkpoint, load_safetensors, save_safetensors
from dynamics.ntk import empirical_ntk

REF = np.load(Path(__file__).parent / "data" / "hf_reference.npz")
FAMILIES = ("bert", "roberta")
# float32 forward pass vs HF in float64 (|hidden|, |logits| <= ~4): observed max abs errors are
# <= 1.7e-6 in float32 and <= 4.1e-15 in float64 (jax 0.10.2, CPU).
ATOL_F32 = {"hidden": 2e-5, "logits": 2e-5}
ATOL_F64 = 1e-12
# The models are tiny, so XLA's compile time dominates: LLVM -O0 about halves it on CPU.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def ref(family, key):
    return REF[f"{family}/{key}"]


def inputs(family):
    return [jnp.asarray(ref(family, k)) for k in ("input_ids", "attention_mask", "token_type_ids")]


def hf_weights(family):
    prefix = f"{family}/w/"
    return {k[len(prefix):]: REF[k] for k in REF.files if k.startswith(prefix)}


def write_checkpoint(directory: Path, family, weights=None, dtype=np.float32) -> Path:
    """A checkpoint directory as ``save_pretrained`` writes it: config.json + model.safetensors."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(str(ref(family, "config_json")))
    weights = hf_weights(family) if weights is None else weights
    save_safetensors(directory / "model.safetensors",
                     {k: v.astype(dtype) for k, v in weights.items()})
    return directory


@partial(jax.jit, static_argnames="config", compiler_options=FAST_COMPILE)
def _forward(params, ids, mask, types, *, config):
    """``(MaskedLM.encode, MaskedLM logits, Encoder on params["encoder"])``, one compilation."""
    model, variables = MaskedLM(config), {"params": params}
    return (model.apply(variables, ids, mask, types, method="encode"),
            model.apply(variables, ids, mask, types),
            Encoder(config).apply({"params": params["encoder"]}, ids, mask, types))


@pytest.mark.parametrize("family", FAMILIES)
def test_matches_hf_float32(family, tmp_path):
    config, params = load_hf_checkpoint(write_checkpoint(tmp_path / family, family))
    assert config.family == family and "lm_head" in params
    hidden, logits, encoded = _forward(params, *inputs(family), config=config)
    assert hidden.dtype == logits.dtype == jnp.float32
    np.testing.assert_allclose(hidden, ref(family, "last_hidden_state"), rtol=0,
                               atol=ATOL_F32["hidden"])
    np.testing.assert_allclose(logits, ref(family, "logits"), rtol=0, atol=ATOL_F32["logits"])
    np.testing.assert_array_equal(encoded, hidden)  # Encoder alone on params["encoder"]


@pytest.mark.parametrize("family", FAMILIES)
def test_matches_hf_float64(family, tmp_path, x64):
    path = write_checkpoint(tmp_path / family, family, dtype=np.float64)
    config, params = load_hf_checkpoint(path, dtype=np.float64)
    hidden, logits, _ = _forward(params, *inputs(family), config=config)
    assert logits.dtype == jnp.float64
    np.testing.assert_allclose(hidden, ref(family, "last_hidden_state"), rtol=0, atol=ATOL_F64)
    np.testing.assert_allclose(logits, ref(family, "logits"), rtol=0, atol=ATOL_F64)


def test_position_ids():
    """RoBERTa (HF create_position_ids_from_input_ids): count from pad_id + 1; pads get pad_id."""
    roberta = EncoderConfig(vocab_size=10, family="roberta", pad_id=1, position_offset=2)
    ids = jnp.array([[0, 5, 6, 2], [0, 5, 1, 1]])
    np.testing.assert_array_equal(position_ids(roberta, ids), [[2, 3, 4, 5], [2, 3, 1, 1]])
    bert = EncoderConfig(vocab_size=10)
    np.testing.assert_array_equal(position_ids(bert, ids), [[0, 1, 2, 3], [0, 1, 2, 3]])
    with pytest.raises(ValueError, match="exceeds the 4 position embeddings"):
        MaskedLM(EncoderConfig(vocab_size=10, max_len=4, family="roberta", pad_id=1,
                               position_offset=2)).init(jax.random.key(0), ids)


def test_reads_files_written_by_the_safetensors_library(tmp_path):
    path = tmp_path / "t.safetensors"
    path.write_bytes(REF["st/file"].tobytes())  # written by safetensors.torch.save_file
    loaded = load_safetensors(path)
    dtypes = {"f64": np.float64, "f32": np.float32, "f16": np.float16, "bf16": np.float32,
              "i64": np.int64}
    assert set(loaded) == set(dtypes)
    for name, dtype in dtypes.items():
        assert loaded[name].dtype == dtype, name
        np.testing.assert_array_equal(loaded[name], REF[f"st/expected/{name}"], err_msg=name)


def test_safetensors_round_trip(tmp_path):
    x = np.array([[1.5, -2.25, 3.0], [0.0, 1e-3, -7.0]])
    arrays = {"f64": x, "f32": x.astype(np.float32), "f16": x.astype(np.float16),
              "bf16": x.astype(ml_dtypes.bfloat16), "i64": np.array([2**40, -3], np.int64),
              "i32": np.arange(6, dtype=np.int32).reshape(2, 3), "u8": np.arange(3, dtype=np.uint8),
              "bool": np.array([True, False]), "scalar": np.array(2.5, np.float32),
              "big_endian": x.astype(">f4")}
    save_safetensors(tmp_path / "a.safetensors", arrays)
    loaded = load_safetensors(tmp_path / "a.safetensors")
    assert list(loaded) == list(arrays)
    for name, a in arrays.items():
        want = a.astype(np.float32) if name in ("bf16", "big_endian") else a
        assert loaded[name].dtype == want.dtype and loaded[name].shape == want.shape, name
        np.testing.assert_array_equal(loaded[name], want, err_msg=name)
    with pytest.raises(ValueError, match="complex128"):
        save_safetensors(tmp_path / "b.safetensors", {"c": np.zeros(2, np.complex128)})


def test_bfloat16_checkpoint_loads_as_float32(tmp_path):
    weights = {k: v.astype(ml_dtypes.bfloat16) for k, v in hf_weights("roberta").items()}
    path = write_checkpoint(tmp_path, "roberta", weights, ml_dtypes.bfloat16)
    _, params = load_hf_checkpoint(path)
    emb = params["encoder"]["embeddings"]["word_embeddings"]["embedding"]
    assert emb.dtype == np.float32
    want = weights["roberta.embeddings.word_embeddings.weight"].astype(np.float32)
    np.testing.assert_array_equal(emb, want)


def test_sharded_checkpoint(tmp_path):
    """model.safetensors.index.json + shards loads the same params as one model.safetensors."""
    weights = hf_weights("bert")
    names = sorted(weights)
    shards = {"model-00001-of-00002.safetensors": names[:20],
              "model-00002-of-00002.safetensors": names[20:]}
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    (sharded / "config.json").write_text(str(ref("bert", "config_json")))
    for shard, keys in shards.items():
        save_safetensors(sharded / shard, {k: weights[k].astype(np.float32) for k in keys})
    weight_map = {k: shard for shard, keys in shards.items() for k in keys}
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    _, got = load_hf_checkpoint(sharded)
    _, want = load_hf_checkpoint(write_checkpoint(tmp_path / "single", "bert"))
    jax.tree.map(np.testing.assert_array_equal, got, want)


def test_missing_weight_is_named_in_one_line(tmp_path):
    weights = hf_weights("bert")
    del weights["bert.encoder.layer.1.attention.self.key.weight"]
    with pytest.raises(ValueError) as err:
        load_hf_checkpoint(write_checkpoint(tmp_path, "bert", weights))
    message = str(err.value)
    assert "\n" not in message and "encoder.layer.1.attention.self.key.weight" in message
    assert "query" not in message  # only the missing name


def test_partial_mlm_head_is_an_error(tmp_path):
    weights = hf_weights("roberta")
    del weights["lm_head.dense.weight"]
    with pytest.raises(ValueError, match=r"lacks required parameter\(s\): lm_head\.dense\.weight$"):
        load_hf_checkpoint(write_checkpoint(tmp_path, "roberta", weights))


def test_headless_checkpoint_returns_encoder_only(tmp_path, caplog):
    """A BertModel checkpoint: no prefix, a pooler, a buffer and the old gamma/beta names."""
    weights = {}
    for name, value in hf_weights("bert").items():
        if not name.startswith("cls."):
            name = name.removeprefix("bert.").replace("LayerNorm.weight", "LayerNorm.gamma")
            weights[name.replace("LayerNorm.bias", "LayerNorm.beta")] = value
    weights["pooler.dense.weight"] = np.zeros((16, 16))
    weights["embeddings.position_ids"] = np.arange(24)[None]
    config, params = load_hf_checkpoint(write_checkpoint(tmp_path, "bert", weights))
    assert set(params) == {"encoder"}
    assert "no MLM head" in caplog.text
    encode = jax.jit(Encoder(config).apply, compiler_options=FAST_COMPILE)
    hidden = encode({"params": params["encoder"]}, *inputs("bert"))
    np.testing.assert_allclose(hidden, ref("bert", "last_hidden_state"), rtol=0,
                               atol=ATOL_F32["hidden"])


def test_unexpected_or_untied_weights_are_errors(tmp_path):
    weights = hf_weights("bert")
    weights["bert.encoder.layer.0.attention.self.rotary.weight"] = np.zeros(3)
    with pytest.raises(ValueError, match="unexpected.*rotary"):
        load_hf_checkpoint(write_checkpoint(tmp_path / "a", "bert", weights))
    weights = hf_weights("roberta")
    weights["lm_head.decoder.weight"] = weights["roberta.embeddings.word_embeddings.weight"] + 1
    with pytest.raises(ValueError, match="untied"):
        load_hf_checkpoint(write_checkpoint(tmp_path / "b", "roberta", weights))


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_hf_checkpoint(tmp_path / "nowhere")
    write_checkpoint(tmp_path, "bert")
    (tmp_path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_hf_checkpoint(tmp_path)
    write_checkpoint(tmp_path, "bert")
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors.*pytorch_model\.bin"):
        load_hf_checkpoint(tmp_path)


def test_unsupported_config_is_an_error(tmp_path):
    write_checkpoint(tmp_path, "bert")
    hf = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**hf, "model_type": "gpt2"}))
    with pytest.raises(ValueError, match="model_type='gpt2'"):
        load_hf_checkpoint(tmp_path)


def test_prompt_entk_of_loaded_roberta_is_symmetric_psd(tmp_path):
    """eNTK of two label-word logits at the mask (Malladi et al.'s prompt kernel), N = 4."""
    config, params = load_hf_checkpoint(write_checkpoint(tmp_path, "roberta"))
    model, label_words, mask_pos = MaskedLM(config), jnp.array([7, 11]), 2
    rows = [0, 1, 2, 0]  # the last row differs from the first in one token
    ids = jnp.asarray(ref("roberta", "input_ids")[rows]).at[3, 1].set(5)
    ids = ids.at[:, mask_pos].set(4)  # token 4 plays <mask>
    x = {"ids": ids, "mask": jnp.asarray(ref("roberta", "attention_mask")[rows])}

    def apply_fn(p, x):
        return model.apply({"params": p}, x["ids"], x["mask"])[:, mask_pos, label_words]  # (N, 2)

    ntk = jax.jit(lambda p, x: empirical_ntk(apply_fn, p, x, trace_axes=(-1,)),
                  compiler_options=FAST_COMPILE)
    k = ntk(params, x)
    assert k.shape == (4, 4) and bool(jnp.all(jnp.isfinite(k)))
    np.testing.assert_allclose(k, k.T, rtol=1e-5, atol=1e-6 * float(jnp.max(jnp.abs(k))))
    eig = np.linalg.eigvalsh(np.asarray(k, np.float64))
    assert eig.min() > -1e-5 * eig.max()


def test_random_init_is_float32_under_x64(x64):
    """``init_masked_lm`` gives float32 params even with x64 on (float64 runs: tested above)."""
    config = EncoderConfig(vocab_size=30, hidden=8, layers=1, heads=2, intermediate=16, max_len=8,
                           family="roberta", pad_id=1, position_offset=2)
    params = init_masked_lm(config, jax.random.key(0))
    assert {a.dtype for a in jax.tree.leaves(params)} == {np.dtype(np.float32)}
    ids = jnp.array([[0, 5, 6, 2, 1, 1]])
    apply = jax.jit(lambda p, i: MaskedLM(config).apply({"params": p}, i, (i != 1).astype(int)),
                    compiler_options=FAST_COMPILE)
    out = apply(params, ids)
    assert out.shape == (1, 6, 30) and out.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out)))
