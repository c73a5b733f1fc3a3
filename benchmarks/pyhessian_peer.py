"""Peer side of benchmarks/curvature.py: PyHessian's power iteration on the same weights and data.

Runs in the separate benchmark environment (.venv-bench: torch 2.13.0 CPU + pyhessian), never imported by
the package. Reads an .npz written by curvature.py, prints one JSON line.
"""

import json
import sys
import time

import torch
from pyhessian import hessian
from torch_mlp import load_tanh_mlp  # benchmarks/torch_mlp.py


def main(path: str, tol: float, repeats: int) -> None:
    model, data = load_tanh_mlp(path)
    x, y = torch.tensor(data["x"]), torch.tensor(data["y"])

    def criterion(out, target):  # ½‖f − y‖² summed over outputs, mean over examples (dynamics' mse)
        return 0.5 * ((out - target) ** 2).sum(dim=1).mean()

    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        comp = hessian(model, criterion, data=(x, y), cuda=False)
        values, _ = comp.eigenvalues(maxIter=1000, tol=tol, top_n=1)
        times.append(time.perf_counter() - start)
        value = float(values[0])
    print(json.dumps({"value": value, "seconds": min(times), "torch": torch.__version__}))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]))
