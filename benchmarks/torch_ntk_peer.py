"""Peer side of benchmarks/ntk.py: a torch.func empirical NTK (jacrev + vmap) on the same weights and inputs.

Runs in the separate benchmark environment (.venv-bench: torch 2.13.0 CPU), never imported by the package.
Reads an .npz written by ntk.py (w{i}, b{i} for a tanh MLP, x), computes the full kernel
K[i, j, a, b] = <df_a(x_i)/dθ, df_b(x_j)/dθ> the way the PyTorch "neural tangent kernels" tutorial does
(per-example Jacobians by vmap(jacrev(functional_call)), contracted per parameter), and prints one JSON
line: best time over repeats, the kernel's checksum values and the torch version.
"""

import json
import sys
import time

import numpy as np
import torch
from torch.func import functional_call, jacrev, vmap
from torch_mlp import load_tanh_mlp  # benchmarks/torch_mlp.py


def main(path: str, repeats: int, out_path: str) -> None:
    torch.set_default_dtype(torch.float32)
    model, data = load_tanh_mlp(path)
    model = model.eval()
    x = torch.tensor(data["x"])
    params = {k: v.detach() for k, v in model.named_parameters()}

    def f_single(p, xi):
        return functional_call(model, p, (xi.unsqueeze(0),)).squeeze(0)

    def entk(x1, x2):
        jac1 = vmap(jacrev(f_single), (None, 0))(params, x1)
        jac2 = vmap(jacrev(f_single), (None, 0))(params, x2)
        jac1 = [j.flatten(2) for j in jac1.values()]
        jac2 = [j.flatten(2) for j in jac2.values()]
        return sum(torch.einsum("Naf,Mbf->NMab", a, b) for a, b in zip(jac1, jac2))

    with torch.no_grad():
        k = entk(x, x)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            k = entk(x, x)
            times.append(time.perf_counter() - start)
    np.save(out_path, k.numpy())
    print(json.dumps({"seconds": min(times), "torch": torch.__version__,
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
