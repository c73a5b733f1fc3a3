"""Empirical NTK: dynamics (Jacobian contraction and NTK-vector products) vs torch.func, side by side.

Same weights (tanh MLP 40-256-256-10, 78,858 parameters, PyTorch-default init), same inputs (N mnist1d-sized
random vectors, N = 200), float32, full kernel (N, N, 10, 10) with cross-logit blocks. dynamics'
``empirical_ntk`` is jitted (compile time excluded, reported separately); the torch side is the PyTorch
tutorial's eNTK (``vmap(jacrev(functional_call))`` then a per-parameter einsum), run by
benchmarks/torch_ntk_peer.py in the separate environment .venv-bench (torch 2.13.0 CPU). Both report the
best of a few repeats after a warm-up, each library with its default CPU threads. The kernels are compared
(max relative difference). A last line times the chunked Jacobian method at N = 2,000 on a 100k-parameter
one-output MLP, with the process's peak resident memory.

Usage: python benchmarks/ntk.py [--peer-python .venv-bench/bin/python] [--n 200]
Prints a markdown section for BENCHMARKS.md.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from timing import best_of, peer_env, save_mlp_problem  # noqa: E402  (benchmarks/timing.py)

from dynamics.models import build_model, num_params
from dynamics.ntk import empirical_ntk

ROOT = Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--peer-python", default=str(ROOT / ".venv-bench" / "bin" / "python"))
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-large", action="store_true")
    args = parser.parse_args()

    widths, d_in, out = [256, 256], 40, 10
    model = build_model("mlp", (d_in,), out, widths=widths, activation="tanh")
    params = model.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (args.n, d_in))
    p = num_params(params)

    rows, kernels = [], {}
    for method in ("jacobian", "ntvp"):
        fn = jax.jit(lambda prm, xs, method=method: empirical_ntk(model.apply, prm, xs, method=method))
        start = time.perf_counter()
        jax.block_until_ready(fn(params, x))
        compile_s = time.perf_counter() - start
        t, k = best_of(lambda fn=fn: jax.block_until_ready(fn(params, x)), args.repeats)
        kernels[method] = np.asarray(k)
        rows.append((f"dynamics `empirical_ntk(method=\"{method}\")` (jit)", t, compile_s))

    torch_row = None
    if Path(args.peer_python).exists():
        with tempfile.TemporaryDirectory() as tmp:
            path, kpath = os.path.join(tmp, "problem.npz"), os.path.join(tmp, "k.npy")
            save_mlp_problem(path, params, len(widths) + 1, x=x)
            env = peer_env()
            res = subprocess.run([args.peer_python, str(Path(__file__).parent / "torch_ntk_peer.py"), path,
                                  str(args.repeats), kpath], capture_output=True, text=True, env=env)
            if res.returncode != 0:
                print("torch peer failed:\n" + res.stderr, file=sys.stderr)
            else:
                peer = json.loads(res.stdout.strip().splitlines()[-1])
                k_torch = np.load(kpath)
                diff = float(np.abs(k_torch - kernels["jacobian"]).max() / np.abs(k_torch).max())
                torch_row = (f"torch.func `vmap(jacrev)` + einsum (torch {peer['torch']})", peer["seconds"], diff)
    else:
        print(f"no peer environment at {args.peer_python}", file=sys.stderr)

    large = None if args.skip_large else large_problem()
    agree = float(np.abs(kernels["ntvp"] - kernels["jacobian"]).max() / np.abs(kernels["jacobian"]).max())
    print(markdown(args.n, p, out, rows, torch_row, agree, large))


def large_problem():
    """Chunked Jacobian eNTK, N = 2,000, P ≈ 100k, one output; time and peak RSS of this process."""
    model = build_model("mlp", (40,), 1, widths=[300, 290], activation="tanh")
    params = model.init(jax.random.key(2))
    x = jax.random.normal(jax.random.key(3), (2000, 40))
    fn = jax.jit(lambda prm, xs: empirical_ntk(model.apply, prm, xs, batch_size=250))
    start = time.perf_counter()
    jax.block_until_ready(fn(params, x))
    seconds = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return num_params(params), seconds, peak_gb


def markdown(n, p, out, rows, torch_row, agree, large):
    lines = ["## Empirical NTK (benchmarks/ntk.py)", "",
             f"tanh MLP 40-256-256-{out} ({p:,} parameters), N = {n} inputs, float32, full kernel "
             f"({n}, {n}, {out}, {out}); best of 3 after warm-up, 2-core CPU. jacobian vs ntvp max relative "
             f"difference {agree:.1e}.", "",
             "| implementation | time (s) | vs torch.func | notes |", "|---|---|---|---|"]
    base = torch_row[1] if torch_row else None
    for name, t, compile_s in rows:
        ratio = f"{base / t:.2f}× faster" if base else "n/a"
        lines.append(f"| {name} | {t:.3f} | {ratio} | compile {compile_s:.2f} s |")
    if torch_row:
        lines.append(f"| {torch_row[0]} | {torch_row[1]:.3f} | 1 | max rel. diff vs dynamics {torch_row[2]:.1e} |")
    if large:
        lines += ["", f"Chunked: N = 2,000, P = {large[0]:,} (tanh 40-300-290-1), "
                  f"`batch_size=250`: {large[1]:.1f} s including compilation, peak RSS of the process "
                  f"{large[2]:.2f} GB (target ≤ 4 GB)."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
