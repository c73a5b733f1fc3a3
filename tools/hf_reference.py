"""Golden values from Hugging Face ``transformers`` for the encoder: tests/data/hf_reference.npz.

Runs only in a side environment with torch + transformers, never in the package's own. The file in
the repository was made with torch 2.13.0+cpu, transformers 5.23.0, safetensors 0.8.0, numpy 2.4.6
(Python 3.11.7), by reusing the torch of ``.venv-bench`` and putting transformers on ``PYTHONPATH``:

    .venv-bench/bin/pip install --target /tmp/hfpkgs transformers safetensors
    PYTHONPATH=/tmp/hfpkgs OPENBLAS_NUM_THREADS=1 .venv-bench/bin/python tools/hf_reference.py \
        [--out tests/data/hf_reference.npz]

(any venv with ``pip install torch transformers safetensors numpy`` works too). Everything is
float64.

Two tiny random masked LMs, ``BertForMaskedLM`` and ``RobertaForMaskedLM`` (vocab 40, hidden 16,
2 layers, 2 heads, intermediate 32, 24 positions; ``torch.manual_seed(0)``), in eval mode with eager
attention.
Every parameter is redrawn after HF's init (weights N(0, 0.3²), biases N(0, 0.3²), LayerNorm scales
1 + N(0, 0.3²)) so that a swapped or transposed weight cannot go unnoticed. The file holds, for
``m`` in ``bert``, ``roberta``:

- ``m/config_json``: the ``config.json`` written by ``save_pretrained`` (a string);
- ``m/w/<name>``: every tensor of the ``model.safetensors`` written by ``save_pretrained``, by its
  HF name (float64; tied weights are stored once, as HF stores them);
- ``m/input_ids``, ``m/attention_mask``, ``m/token_type_ids`` (3, 8): inputs with right padding;
- ``m/last_hidden_state`` (3, 8, 16): ``outputs.hidden_states[-1]``; ``m/logits`` (3, 8, 40);
- ``m/sdpa_max_abs_diff``: max |logits(sdpa) − logits(eager)| (HF's two attention kernels agree).

and, for the safetensors reader, ``st/file``: the bytes of a file written by
``safetensors.torch.save_file`` with tensors ``f64, f32, f16, bf16, i64`` whose values are in
``st/expected/<name>`` (float64 / int64). ``versions``: the library versions used.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import safetensors
import safetensors.torch
import torch
import transformers
from transformers import BertConfig, BertForMaskedLM, RobertaConfig, RobertaForMaskedLM

ROOT = Path(__file__).resolve().parents[1]
SIZES = dict(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
             intermediate_size=32, max_position_embeddings=24, hidden_dropout_prob=0.0,
             attention_probs_dropout_prob=0.0)
MODELS = {
    "bert": (BertForMaskedLM, BertConfig(**SIZES, type_vocab_size=2, pad_token_id=0)),
    "roberta": (RobertaForMaskedLM, RobertaConfig(**SIZES, type_vocab_size=1, pad_token_id=1,
                                                  bos_token_id=0, eos_token_id=2,
                                                  layer_norm_eps=1e-5)),
}


def inputs(model_name, pad_id, rng):
    lengths = [8, 6, 3]
    ids = rng.integers(3, 40, size=(3, 8))
    mask = (np.arange(8)[None, :] < np.array(lengths)[:, None]).astype(np.int64)
    ids = np.where(mask == 1, ids, pad_id)
    types = np.zeros_like(ids)
    if model_name == "bert":  # a second segment in the first row
        types[0, 4:] = 1
    return ids, mask, types


def perturb(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = 0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype)
            is_scale = "LayerNorm.weight" in name or "layer_norm.weight" in name
            p.copy_(1.0 + noise if is_scale else noise)


def reference(name, rng, gen):
    cls, config = MODELS[name]
    torch.manual_seed(0)
    model = cls(config).double().eval()
    perturb(model, gen)
    ids, mask, types = inputs(name, config.pad_token_id, rng)
    args = dict(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                token_type_ids=torch.tensor(types), output_hidden_states=True)
    out = {}
    with torch.no_grad():
        model.set_attn_implementation("eager")
        eager = model(**args)
        model.set_attn_implementation("sdpa")
        sdpa = model(**args)
    out["sdpa_max_abs_diff"] = np.array(float((sdpa.logits - eager.logits).abs().max()))
    out.update(input_ids=ids, attention_mask=mask, token_type_ids=types,
               last_hidden_state=eager.hidden_states[-1].numpy(), logits=eager.logits.numpy())
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        out["config_json"] = np.array((Path(tmp) / "config.json").read_text())
        weights = safetensors.torch.load_file(str(Path(tmp) / "model.safetensors"))
    for key, value in weights.items():
        out[f"w/{key}"] = value.numpy()
    return {f"{name}/{k}": v for k, v in out.items()}


def safetensors_file():
    values = np.array([[1.5, -2.25, 3.0], [0.0, 1e-3, -7.0]])
    tensors = {name: torch.tensor(values, dtype=dtype) for name, dtype in
               [("f64", torch.float64), ("f32", torch.float32), ("f16", torch.float16),
                ("bf16", torch.bfloat16)]}
    tensors["i64"] = torch.tensor([[1, -2, 3], [2**40, 0, -(2**40)]], dtype=torch.int64)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.safetensors"
        safetensors.torch.save_file(tensors, str(path), metadata={"format": "pt"})
        raw = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    out = {"st/file": raw}
    for k, t in tensors.items():
        out[f"st/expected/{k}"] = (t.to(torch.float64) if t.is_floating_point() else t).numpy()
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "tests" / "data" / "hf_reference.npz"))
    args = parser.parse_args()
    rng, gen = np.random.default_rng(0), torch.Generator().manual_seed(0)
    data = {}
    for name in MODELS:
        data.update(reference(name, rng, gen))
    data.update(safetensors_file())
    data["versions"] = np.array(json.dumps({
        "torch": torch.__version__, "transformers": transformers.__version__,
        "safetensors": safetensors.__version__, "numpy": np.__version__,
        "python": sys.version.split()[0]}))
    np.savez_compressed(args.out, **data)
    print(f"wrote {args.out}: {len(data)} arrays; sdpa vs eager: "
          f"{[float(data[f'{m}/sdpa_max_abs_diff']) for m in MODELS]}")


if __name__ == "__main__":
    main()
