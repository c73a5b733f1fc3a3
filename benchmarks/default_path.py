"""The default call is the fast path: unjitted dynamics calls vs the jitted path and vs torch.func.

1. λ_max to 1e-4 on the tanh MLP 32-200-200-10 (48,810 parameters, 1,000 examples, MSE, float32) of
   benchmarks/curvature.py: the call a user writes in a notebook, ``top_eigenvalue(lambda q: loss(q,
   x, y), params, key=key, tol=1e-4)`` with a fresh lambda each time (self-compiling, Lanczos by
   default), against the jitted Lanczos path ``jax.jit(... top_eigenvalues(...))`` with the data as jit
   arguments. The two are timed interleaved (best of ``--repeats`` rounds, after one warm-up call
   each), so a load change on the shared machine hits both. The old default (power iteration,
   uncompiled) is timed once for reference.
2. The full eNTK (N, N, 10, 10) of a tanh MLP 40-512-512-10 (288,778 parameters, N = 128): the default
   call ``empirical_ntk(apply, params, x, x)`` (self-compiling, ``method="auto"``) against torch.func
   ``vmap(jacrev)`` + einsum (benchmarks/torch_ntk_peer.py, in the side environment), same weights and
   inputs; best of ``--repeats`` after a warm-up call each; kernels compared. The previous default,
   ``method="ntvp"``, is timed too.

Usage: python benchmarks/default_path.py [--peer-python /tmp/tvenv/bin/python] [--only ntk]
Prints a markdown section for BENCHMARKS.md.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from timing import peer_env, save_mlp_problem  # noqa: E402  (benchmarks/timing.py)
from curvature import problem  # noqa: E402  (benchmarks/curvature.py: the 48k MLP and its data)

from dynamics import compiled
from dynamics.curvature import top_eigenvalue, top_eigenvalues
from dynamics.losses import mse
from dynamics.models import build_model, num_params
from dynamics.ntk import choose_method, empirical_ntk

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-4


def timed(fn):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - start, out


def interleaved(fns: dict, repeats: int) -> tuple[dict, dict]:
    """Best time of each function over ``repeats`` rounds (one call of each per round)."""
    first, best, out = {}, {k: np.inf for k in fns}, {}
    for name, fn in fns.items():
        first[name], out[name] = timed(fn)
    for _ in range(repeats):
        for name, fn in fns.items():
            t, out[name] = timed(fn)
            best[name] = min(best[name], t)
    return first, best, out


def eigen_section(repeats: int):
    model, params, x, y = problem()

    def loss(p, x, y):
        return mse(model.apply(p, x), y)

    key = jax.random.key(2)
    jitted = jax.jit(lambda p, x, y, k: top_eigenvalues(lambda q: loss(q, x, y), p, 1, key=k,
                                                        method="lanczos", tol=TOL,
                                                        max_iters=1000))
    fns = {
        "default": lambda: top_eigenvalue(lambda q: loss(q, x, y), params, key=key, tol=TOL,
                                          max_iters=1000),
        "jitted": lambda: jitted(params, x, y, key),
    }
    compiled.cache_clear()
    first, best, out = interleaved(fns, repeats)
    old_t, old = timed(lambda: top_eigenvalue.raw(lambda q: loss(q, x, y), params, key=key, tol=TOL,
                                                  max_iters=1000, method="power"))
    # reference: Lanczos in float64 to 1e-10 on the same weights
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
        x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
        ref = float(top_eigenvalue(lambda q: loss(q, x64, y64), p64, key=key, tol=1e-10,
                                   max_iters=3000).value)
    rows = [
        ("default call `top_eigenvalue(lambda q: loss(q, x, y), params, key=key, tol=1e-4)`, "
         "no `jax.jit` (Lanczos)", best["default"], first["default"],
         float(out["default"].value), int(out["default"].num_matvecs)),
        ("jitted Lanczos `jax.jit(top_eigenvalues(...))`, data as jit arguments",
         best["jitted"], first["jitted"], float(out["jitted"].values[0]),
         int(out["jitted"].num_matvecs)),
        ("old default: power iteration, no `jax.jit` (retraced and recompiled each call)", old_t,
         old_t, float(old.value), int(old.num_matvecs)),
    ]
    return num_params(params), ref, rows, compiled.cache_info()


def ntk_section(peer_python: str, repeats: int, n: int):
    widths, d_in, out_dim = [512, 512], 40, 10
    model = build_model("mlp", (d_in,), out_dim, widths=widths, activation="tanh")
    params = model.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (n, d_in))
    method = choose_method(model.apply, params, x, x)
    first_t, k = timed(lambda: empirical_ntk(model.apply, params, x, x))
    best = min(timed(lambda: empirical_ntk(model.apply, params, x, x))[0] for _ in range(repeats))
    k = np.asarray(k)
    old_first, _ = timed(lambda: empirical_ntk(model.apply, params, x, x, method="ntvp"))
    old = (min(timed(lambda: empirical_ntk(model.apply, params, x, x, method="ntvp"))[0]
               for _ in range(repeats)), old_first)
    peer = None
    if Path(peer_python).exists():
        with tempfile.TemporaryDirectory() as tmp:
            path, kpath = os.path.join(tmp, "problem.npz"), os.path.join(tmp, "k.npy")
            save_mlp_problem(path, params, len(widths) + 1, x=x)
            env = peer_env()
            res = subprocess.run([peer_python, str(Path(__file__).parent / "torch_ntk_peer.py"),
                                  path, str(repeats), kpath], capture_output=True, text=True,
                                 env=env)
            if res.returncode != 0:
                print("torch peer failed:\n" + res.stderr, file=sys.stderr)
            else:
                info = json.loads(res.stdout.strip().splitlines()[-1])
                k_torch = np.load(kpath)
                diff = float(np.abs(k_torch - k).max() / np.abs(k_torch).max())
                peer = (info["seconds"], info["torch"], diff)
    else:
        print(f"no peer environment at {peer_python}", file=sys.stderr)
    return num_params(params), n, out_dim, method, first_t, best, peer, old


def header():
    load = os.getloadavg()[0]
    return ["## The default call is the fast path (benchmarks/default_path.py)", "",
            f"Load average at the end of the run: {load:.1f} on {os.cpu_count()} cores (other jobs "
            "share the machine: compare ratios within a table, not absolute times across runs).", ""]


def eigen_markdown(eig):
    p, ref, rows, info = eig
    lines = [f"**λ_max to {TOL:g}.** tanh MLP 32-200-200-10 ({p:,} parameters), 1,000 examples, MSE, "
             f"float32, cold start; reference λ_max = {ref:.6g} (float64 Lanczos, tol 1e-10). "
             "Default and jitted calls timed interleaved, best of the rounds after a warm-up call "
             "(first call, with compilation, in its own column).", "",
             "| call | time (s) | first call (s) | HVPs | λ_max | rel. error | time / jitted |",
             "|---|---|---|---|---|---|---|"]
    jit_t = rows[1][1]
    for name, t, first, value, hvps in rows:
        lines.append(f"| {name} | {t:.3f} | {first:.2f} | {hvps} | {value:.6g} | "
                     f"{abs(value - ref) / abs(ref):.1e} | {t / jit_t:.2f}× |")
    ratio = rows[0][1] / jit_t
    lines += ["", f"Default call / jitted path: **{ratio:.2f}×** (goal ≤ 1.10×: "
              f"{'met' if ratio <= 1.10 else 'not met'}); compiled-function cache after the run: "
              f"{info['hits']} hits, {info['misses']} misses."]
    return lines


def ntk_markdown(ntk):
    p, n, o, method, first_t, best, peer, old = ntk
    lines = [f"**Full eNTK.** tanh MLP 40-512-512-{o} ({p:,} parameters), N = {n}, kernel "
             f"({n}, {n}, {o}, {o}), float32; best of the repeats after a warm-up call.", "",
             "| call | time (s) | first call (s) | vs torch.func |", "|---|---|---|---|"]
    base = peer[0] if peer else None
    ratio = f"**{base / best:.1f}× faster**" if base else "n/a"
    lines.append(f"| default call `empirical_ntk(apply, params, x, x)`, no `jax.jit` (auto → "
                 f"`{method}`) | {best:.3f} | {first_t:.2f} | {ratio} |")
    old_ratio = f"{base / old[0]:.1f}× faster" if base else "n/a"
    lines.append(f"| previous default, `method=\"ntvp\"` (NTK-vector products) | {old[0]:.3f} | "
                 f"{old[1]:.2f} | {old_ratio} |")
    if peer:
        lines.append(f"| torch.func `vmap(jacrev)` + einsum (torch {peer[1]}) | {peer[0]:.3f} | — | 1 |")
        lines += ["", f"Max relative difference of the kernels: {peer[2]:.1e}. Goal ≥ 10×: "
                  f"{'met' if base / best >= 10 else 'not met'}."]
    return lines


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--peer-python", default=str(ROOT / ".venv-bench" / "bin" / "python"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--only", choices=("eigen", "ntk"), default=None)
    args = parser.parse_args()
    lines = header()
    if args.only != "ntk":
        lines += eigen_markdown(eigen_section(args.repeats)) + [""]
    if args.only != "eigen":
        lines += ntk_markdown(ntk_section(args.peer_python, max(2, args.repeats // 2), args.n))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
