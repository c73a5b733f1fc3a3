"""Peer-side helper (runs in .venv-bench): rebuild dynamics' tanh MLP in PyTorch from an .npz file.

The file holds ``w0, b0, w1, b1, …`` (Flax layout: kernels are (in, out)) plus the inputs; the same
weights go into ``torch.nn.Linear`` layers (weights transposed) with tanh between them.
"""

import numpy as np
import torch


def load_tanh_mlp(path: str):
    """Return ``(model, data)``: the torch ``Sequential`` and the loaded arrays."""
    data = np.load(path)
    layers, i = [], 0
    while f"w{i}" in data:
        w, b = torch.tensor(data[f"w{i}"]), torch.tensor(data[f"b{i}"])
        lin = torch.nn.Linear(w.shape[0], w.shape[1])
        with torch.no_grad():
            lin.weight.copy_(w.T)
            lin.bias.copy_(b)
        layers += [lin, torch.nn.Tanh()]
        i += 1
    return torch.nn.Sequential(*layers[:-1]), data
