"""Load a local Hugging Face BERT / RoBERTa checkpoint directory into ``dynamics.models.encoder``.

A checkpoint directory holds ``config.json`` and ``model.safetensors`` (or a sharded
``model.safetensors.index.json`` with its shards), as written by ``save_pretrained``; PyTorch
``pytorch_model.bin`` files are not read. Nothing is downloaded: get the files onto disk first (e.g.
``hf download FacebookAI/roberta-base --local-dir roberta-base``).

``load_hf_checkpoint(path) -> (EncoderConfig, params)`` maps HF parameter names onto the Flax tree
of ``MaskedLM`` with an explicit table (``HF_NAME_MAP``, ``hf_name_map(config)``): ``bert.`` /
``roberta.`` / no prefix; torch ``Linear`` weights ``(out, in)`` are transposed to Flax kernels
``(in, out)``; LayerNorm ``weight``/``gamma`` → ``scale``, ``bias``/``beta`` → ``bias``.

Safetensors files are read by a small numpy reader (``load_safetensors``; F64, F32, F16, BF16 →
float32, I64, I32, I16, I8, U8, BOOL), memory-mapped, with no dependency on the ``safetensors``
package (whose numpy backend has no bfloat16). ``save_safetensors`` writes the same format.
"""

import json
import logging
import re
from pathlib import Path

import numpy as np

from dynamics.models.encoder import EncoderConfig

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# safetensors: 8-byte little-endian header length, JSON header {name: {dtype, shape, data_offsets}}
# (offsets relative to the byte buffer after the header), raw little-endian row-major bytes.

_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
           "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items() if k != "BF16"}


def _bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def load_safetensors(path) -> dict[str, np.ndarray]:
    """Read a ``.safetensors`` file into ``{name: numpy array}`` (BF16 is returned as float32)."""
    path = Path(path)
    data = np.memmap(path, dtype=np.uint8, mode="r")
    n = int(data[:8].view("<u8")[0])
    header = json.loads(bytes(data[8:8 + n]).decode("utf-8"))
    header.pop("__metadata__", None)
    body = data[8 + n:]
    out = {}
    for name, info in header.items():
        if info["dtype"] not in _DTYPES:
            raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {info['dtype']}; "
                             f"supported: {', '.join(_DTYPES)}")
        start, stop = info["data_offsets"]
        a = body[start:stop].view(_DTYPES[info["dtype"]]).reshape(tuple(info["shape"]))
        out[name] = _bf16_to_f32(a) if info["dtype"] == "BF16" else np.array(a)
    return out


def save_safetensors(path, arrays: dict) -> None:
    """Write ``{name: array}`` as a ``.safetensors`` file (``ml_dtypes.bfloat16`` as BF16)."""
    header, chunks, offset = {}, [], 0
    for name, a in arrays.items():
        a = np.asarray(a, order="C")  # (ascontiguousarray would turn 0-d arrays into 1-d)
        if a.dtype.name == "bfloat16":
            dtype, raw = "BF16", a.view("<u2").tobytes()
        elif (little := a.dtype.newbyteorder("<")) in _NAMES:
            dtype, raw = _NAMES[little], a.astype(little).tobytes()
        else:
            raise ValueError(f"tensor {name!r}: dtype {a.dtype} cannot be written to safetensors")
        header[name] = {"dtype": dtype, "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)  # the reference writer pads the header to 8 bytes
    with open(path, "wb") as f:
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
        for raw in chunks:
            f.write(raw)


# ----------------------------------------------------------------------------------------------
# config.json -> EncoderConfig

_FAMILIES = {"bert": "bert", "roberta": "roberta"}  # HF model_type -> EncoderConfig.family
_ACTIVATIONS = {"gelu": "gelu", "gelu_python": "gelu", "gelu_new": "gelu_new",
                "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}  # HF hidden_act -> ours


def config_from_hf(hf: dict) -> EncoderConfig:
    """``EncoderConfig`` from the fields of an HF ``BertConfig`` / ``RobertaConfig`` dict."""
    model_type = hf.get("model_type", "bert")
    if model_type not in _FAMILIES:
        raise ValueError(f"model_type={model_type!r} is not supported; "
                         f"supported: {', '.join(_FAMILIES)}")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"position_embedding_type={hf['position_embedding_type']!r} is not "
                         "supported (only 'absolute')")
    act = hf.get("hidden_act", "gelu")
    if act not in _ACTIVATIONS:
        raise ValueError(f"hidden_act={act!r} is not supported; "
                         f"supported: {', '.join(_ACTIVATIONS)}")
    missing = [k for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                           "intermediate_size") if k not in hf]
    if missing:
        raise ValueError(f"config.json lacks required field(s): {', '.join(missing)}")
    family = _FAMILIES[model_type]
    pad_id = hf.get("pad_token_id")
    pad_id = (1 if family == "roberta" else 0) if pad_id is None else int(pad_id)
    return EncoderConfig(
        vocab_size=hf["vocab_size"], hidden=hf["hidden_size"], layers=hf["num_hidden_layers"],
        heads=hf["num_attention_heads"], intermediate=hf["intermediate_size"],
        max_len=hf.get("max_position_embeddings", 512),
        type_vocab_size=hf.get("type_vocab_size", 2),
        layer_norm_eps=float(hf.get("layer_norm_eps", 1e-12)), activation=_ACTIVATIONS[act],
        pad_id=pad_id, position_offset=pad_id + 1 if family == "roberta" else 0, family=family)


# ----------------------------------------------------------------------------------------------
# HF parameter names -> Flax paths of MaskedLM's params

# HF module name (without the bert./roberta. prefix; {i} = layer) -> (Flax module path, module kind)
_EMB, _LAYER = ("encoder", "embeddings"), ("encoder", "layer_{i}")
_ATT = (*_LAYER, "attention")
HF_NAME_MAP = {
    "embeddings.word_embeddings": ((*_EMB, "word_embeddings"), "embed"),
    "embeddings.position_embeddings": ((*_EMB, "position_embeddings"), "embed"),
    "embeddings.token_type_embeddings": ((*_EMB, "token_type_embeddings"), "embed"),
    "embeddings.LayerNorm": ((*_EMB, "LayerNorm"), "norm"),
    "encoder.layer.{i}.attention.self.query": ((*_ATT, "query"), "dense"),
    "encoder.layer.{i}.attention.self.key": ((*_ATT, "key"), "dense"),
    "encoder.layer.{i}.attention.self.value": ((*_ATT, "value"), "dense"),
    "encoder.layer.{i}.attention.output.dense": ((*_ATT, "output"), "dense"),
    "encoder.layer.{i}.attention.output.LayerNorm": ((*_ATT, "LayerNorm"), "norm"),
    "encoder.layer.{i}.intermediate.dense": ((*_LAYER, "intermediate"), "dense"),
    "encoder.layer.{i}.output.dense": ((*_LAYER, "output"), "dense"),
    "encoder.layer.{i}.output.LayerNorm": ((*_LAYER, "output_LayerNorm"), "norm"),
}
# MLM heads (names are top-level, not under the bert./roberta. prefix), per family
HF_HEAD_MAP = {
    "bert": {"cls.predictions.transform.dense": (("lm_head", "dense"), "dense"),
             "cls.predictions.transform.LayerNorm": (("lm_head", "LayerNorm"), "norm"),
             "cls.predictions": (("lm_head",), "bias")},
    "roberta": {"lm_head.dense": (("lm_head", "dense"), "dense"),
                "lm_head.layer_norm": (("lm_head", "LayerNorm"), "norm"),
                "lm_head": (("lm_head",), "bias")},
}
# HF parameter suffix -> (Flax leaf, transpose?) per module kind; the first suffix per leaf is the
# canonical name, later ones are accepted alternatives (old gamma/beta, lm_head.decoder.bias)
_LEAVES = {
    "embed": {"weight": ("embedding", False)},
    "dense": {"weight": ("kernel", True), "bias": ("bias", False)},
    "norm": {"weight": ("scale", False), "bias": ("bias", False),
             "gamma": ("scale", False), "beta": ("bias", False)},
    "bias": {"bias": ("bias", False), "decoder.bias": ("bias", False)},
}
_PREFIXES = ("bert.", "roberta.", "")
# Names read but not used: buffers, pooler, NSP / classifier heads, the duplicate decoder bias.
_IGNORED = re.compile(r"(^|\.)(position_ids|token_type_ids)$|(^|\.)pooler\."
                      r"|^cls\.seq_relationship\.|^classifier\.|^qa_outputs\."
                      r"|^(cls\.predictions|lm_head)\.decoder\.bias$")
# The tied decoder weight: checked against the word embeddings, not loaded.
_DECODER = ("cls.predictions.decoder.weight", "lm_head.decoder.weight")


def hf_name_map(config: EncoderConfig) -> tuple[dict, dict]:
    """``(encoder, head)`` maps ``{HF name: (Flax path, transpose?, alternative HF names)}``.

    Encoder names are without the ``bert.`` / ``roberta.`` prefix; head names are top-level.
    """

    def expand(table):
        out = {}
        for hf_module, (path, kind) in table.items():
            for i in range(config.layers if "{i}" in hf_module else 1):
                module = hf_module.format(i=i)
                fpath = tuple(p.format(i=i) for p in path)
                by_leaf = {}
                for suffix, (leaf, transpose) in _LEAVES[kind].items():
                    by_leaf.setdefault(leaf, []).append((f"{module}.{suffix}", transpose))
                for leaf, names in by_leaf.items():
                    out[names[0][0]] = (fpath + (leaf,), names[0][1], [n for n, _ in names[1:]])
        return out

    return expand(HF_NAME_MAP), expand(HF_HEAD_MAP[config.family])


def _set(tree: dict, path: tuple, value) -> None:
    for p in path[:-1]:
        tree = tree.setdefault(p, {})
    tree[path[-1]] = value


def _find(state: dict, names: list[str], prefixes) -> str | None:
    for prefix in prefixes:
        for name in names:
            if prefix + name in state:
                return prefix + name
    return None


def params_from_state_dict(config: EncoderConfig, state: dict, dtype=np.float32) -> dict:
    """Flax ``MaskedLM`` params (or ``{"encoder": …}`` only, when no MLM head is present)."""
    enc_map, head_map = hf_name_map(config)
    params, used = {}, set()

    def lookup(table, prefixes):
        found = {name: _find(state, [name, *alternatives], prefixes)
                 for name, (_, _, alternatives) in table.items()}
        return found, [name for name, key in found.items() if key is None]

    found, missing = lookup(enc_map, _PREFIXES)
    head_found, head_missing = lookup(head_map, ("",))
    if len(head_missing) == len(head_map):
        log.warning("checkpoint has no MLM head (%s); returning encoder-only params",
                    ", ".join(head_map))
    else:
        found, missing = {**found, **head_found}, missing + head_missing
    if missing:
        raise ValueError(f"checkpoint lacks required parameter(s): {', '.join(missing)}")
    tables = {**enc_map, **head_map}
    for name, key in found.items():
        path, transpose, _ = tables[name]
        a = np.asarray(state[key], dtype=dtype)
        _set(params, path, a.T if transpose else a)
        used.add(key)
    emb = params["encoder"]["embeddings"]["word_embeddings"]["embedding"]
    for name in _DECODER:
        if name in state:
            used.add(name)
            if not np.array_equal(np.asarray(state[name], dtype=dtype), emb):
                raise ValueError(f"{name} differs from the word embeddings: untied MLM decoders "
                                 "are not supported")
    unexpected = sorted(k for k in state if k not in used and not _IGNORED.search(k))
    if unexpected:
        raise ValueError(f"checkpoint has unexpected parameter(s) for a {config.family} encoder / "
                         f"MLM head: {', '.join(unexpected)}")
    expected = (config.max_len, config.hidden)
    if emb.shape != (config.vocab_size, config.hidden) or \
            params["encoder"]["embeddings"]["position_embeddings"]["embedding"].shape != expected:
        raise ValueError("embedding shapes do not match config.json (vocab_size, hidden_size, "
                         "max_position_embeddings)")
    return params


def load_hf_checkpoint(path, dtype=np.float32) -> tuple[EncoderConfig, dict]:
    """Load a local HF BERT / RoBERTa checkpoint directory.

    Args:
      path: directory with ``config.json`` and ``model.safetensors`` (or
        ``model.safetensors.index.json`` plus shards).
      dtype: numpy dtype of the returned parameters (float16/bfloat16 weights are upcast);
        use ``np.float64`` together with ``jax_enable_x64``.

    Returns:
      ``(config, params)``: ``params`` is the ``params`` collection of ``MaskedLM(config)``,
      ``{"encoder": …, "lm_head": …}``, as numpy arrays. When the checkpoint has no MLM head
      (e.g. a ``BertModel``) the ``"lm_head"`` key is absent (a warning is logged):
      ``params["encoder"]`` then feeds ``Encoder(config)``. Test ``"lm_head" in params``.

    Raises:
      FileNotFoundError: naming the missing ``config.json`` / ``model.safetensors``.
      ValueError: on an unsupported config, or naming missing or unexpected parameters.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint directory {path} does not exist")
    config_file, weights, index = path / "config.json", path / "model.safetensors", \
        path / "model.safetensors.index.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} is missing: a checkpoint needs config.json")
    config = config_from_hf(json.loads(config_file.read_text()))
    if weights.is_file():
        state = load_safetensors(weights)
    elif index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state = {k: v for shard in shards for k, v in load_safetensors(path / shard).items()}
    else:
        other = [p.name for p in path.glob("*.bin")]
        hint = f" (found {', '.join(other)}: convert it to safetensors first)" if other else ""
        raise FileNotFoundError(f"{weights} is missing: only safetensors weights are read{hint}")
    return config, params_from_state_dict(config, state, dtype)
