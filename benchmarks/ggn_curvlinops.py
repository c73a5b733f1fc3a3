"""GGN and empirical-Fisher products: dynamics vs curvlinops 3.0.1 on the same weights, side by side.

Same weights (tanh MLP 32-64-64-10, 7,434 parameters), same data (512 synthetic examples, given to
curvlinops as two batches of 256), float64, for two losses:

* MSE ½‖f − y‖² summed over outputs, mean over examples (dynamics' ``mse``); curvlinops gets
  ``MSELoss(reduction="sum")``, whose GGN is 2JᵀJ, so its operator is scaled by 1/(2N);
* softmax cross-entropy, mean over examples (``CrossEntropyLoss()`` directly).

Compared: ``G @ V`` on a block of 8 fixed random vectors (max relative column error), λ_max(G) (dynamics'
Lanczos on ``flat_ggn`` vs ARPACK ``eigsh(A.to_scipy(), which="LA")``), and the same for the empirical
Fisher (``EFLinearOperator``; for the sum-reduced MSE its per-example gradients are 2gᵢ and it is not
normalized, so its operator is scaled by 1/(4N)). Time: one matvec and a block of 8 (best of 5 after a
warm-up; compilation excluded for dynamics).

Usage: python benchmarks/ggn_curvlinops.py [--peer-python /tmp/cvenv/bin/python]
The peer side is this same file run with ``--peer FILE`` in the torch environment (torch 2.13.0 CPU +
curvlinops-for-pytorch 3.0.1: ``python -m venv /tmp/cvenv && /tmp/cvenv/bin/pip install torch==2.13.0
curvlinops-for-pytorch==3.0.1 numpy scipy``). Prints a markdown section.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
N, DIM, CLASSES, WIDTHS, K_VECS = 512, 32, 10, (64, 64), 8
# Factor turning curvlinops' operator into dynamics' one. GGN: MSELoss(sum) has H_ℓ = 2I per example vs
# dynamics' I/N. Empirical Fisher: curvlinops does not normalize sum-reduced losses and its
# per-example gradients are those of ‖f − y‖², 2gᵢ, so F_cl = 4 Σ gᵢgᵢᵀ vs dynamics' (1/N) Σ gᵢgᵢᵀ.
SCALE = {"mse": {"ggn": 1 / (2 * N), "ef": 1 / (4 * N)}, "cross_entropy": {"ggn": 1.0, "ef": 1.0}}


def best_of(fn, repeats=5):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


# ---------------------------------------------------------------- peer side (torch + curvlinops)
def peer(path: str) -> None:
    import numpy as np
    import torch
    from curvlinops import EFLinearOperator, GGNLinearOperator
    from scipy.sparse.linalg import eigsh

    sys.path.insert(0, str(Path(__file__).parent))
    from torch_mlp import load_tanh_mlp  # benchmarks/torch_mlp.py

    torch.set_default_dtype(torch.float64)
    # One thread: on a shared 2-core machine torch's default pool oversubscribes (measured: 2.1 s per
    # GGN matvec with the default pool under load vs 41 ms with one thread).
    torch.set_num_threads(1)
    model, data = load_tanh_mlp(path)
    model = model.double()
    x = torch.tensor(data["x"])
    V = torch.tensor(data["V"])  # (K, n) in dynamics' flat layout
    order = data["order"]  # dynamics flat index of each torch parameter entry
    params = [p for p in model.parameters() if p.requires_grad]
    out = {"torch": torch.__version__}
    import curvlinops
    out["curvlinops"] = getattr(curvlinops, "__version__", "3.0.1")
    for loss_name in ("mse", "cross_entropy"):
        if loss_name == "mse":
            y = torch.tensor(data["y_onehot"])
            loss_func = torch.nn.MSELoss(reduction="sum")
        else:
            y = torch.tensor(data["labels"]).long()
            loss_func = torch.nn.CrossEntropyLoss()
        batches = [(x[:N // 2], y[:N // 2]), (x[N // 2:], y[N // 2:])]
        for op_name, cls in (("ggn", GGNLinearOperator), ("ef", EFLinearOperator)):
            A = cls(model, loss_func, params, batches)
            scale = SCALE[loss_name][op_name]
            Vt = V[:, order].T.contiguous()  # (n, K) in torch layout
            t, AV = best_of(lambda: A @ Vt)
            t1, _ = best_of(lambda: A @ Vt[:, :1].contiguous())
            AV = (scale * AV).T.numpy()
            back = np.empty_like(AV)
            back[:, order] = AV
            t0 = time.perf_counter()
            lam = float(eigsh(A.to_scipy(), k=1, which="LA", tol=1e-10)[0][0]) * scale
            t_eig = time.perf_counter() - t0
            out[f"{loss_name}/{op_name}"] = {"AV": back.tolist(), "matvec_s": t1,
                                             f"matmat{K_VECS}_s": t, "lambda_max": lam,
                                             "eigsh_s": t_eig}
    print(json.dumps(out))


# ---------------------------------------------------------------- dynamics side
def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--peer-python", default=str(ROOT / ".venv-bench" / "bin" / "python"))
    parser.add_argument("--peer", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        return peer(args.peer)

    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    from jax.flatten_util import ravel_pytree

    from dynamics.curvature.ggn import flat_empirical_fisher, flat_ggn, ggn_top_eigenvalues, output_loss
    from dynamics.models import build_model

    k_x, k_y, k_p, k_v = jax.random.split(jax.random.key(0), 4)
    model = build_model("mlp", (DIM,), CLASSES, widths=list(WIDTHS), activation="tanh")
    params = jax.tree.map(lambda p: p.astype(jnp.float64), model.init(k_p))
    x = jax.random.normal(k_x, (N, DIM), jnp.float64)
    labels = jax.random.randint(k_y, (N,), 0, CLASSES)
    flat, unravel = ravel_pytree(params)
    n = flat.shape[0]
    V = jax.random.normal(k_v, (K_VECS, n), jnp.float64)

    # torch layout: for each Linear, weight (out, in) row-major, then bias; map to dynamics' flat index
    index_tree = unravel(jnp.arange(n, dtype=jnp.float64))
    order = []
    for i in range(len(WIDTHS) + 1):
        layer = index_tree[f"dense_{i}"]
        order += [np.asarray(layer["kernel"]).T.ravel(), np.asarray(layer["bias"]).ravel()]
    order = np.concatenate(order).astype(np.int64)
    assert sorted(order.tolist()) == list(range(n))

    ours = {}
    for loss_name in ("mse", "cross_entropy"):
        y = labels if loss_name == "cross_entropy" else jax.nn.one_hot(labels, CLASSES, dtype=jnp.float64)
        for op_name, flat_op in (("ggn", flat_ggn), ("ef", flat_empirical_fisher)):
            @jax.jit
            def matmat(p, x, y, V, flat_op=flat_op, loss_name=loss_name):
                mv, _, _ = flat_op(lambda q: model.apply(q, x), output_loss(loss_name, y), p)
                return jax.vmap(mv)(V)

            @jax.jit
            def top(p, x, y, key, op_name=op_name, loss_name=loss_name):
                return ggn_top_eigenvalues(lambda q: model.apply(q, x), output_loss(loss_name, y), p,
                                           key=key, operator="ggn" if op_name == "ggn" else
                                           "empirical_fisher", tol=1e-10, max_iters=2000)

            t, AV = best_of(lambda: jax.block_until_ready(matmat(params, x, y, V)))
            t1, _ = best_of(lambda: jax.block_until_ready(matmat(params, x, y, V[:1])))
            te, res = best_of(lambda: jax.block_until_ready(top(params, x, y, jax.random.key(1))), 3)
            ours[f"{loss_name}/{op_name}"] = {"AV": np.asarray(AV), "matvec_s": t1,
                                              f"matmat{K_VECS}_s": t,
                                              "lambda_max": float(res.values[0]), "eig_s": te,
                                              "eig_matvecs": int(res.num_matvecs)}

    peer_out = None
    if Path(args.peer_python).exists():
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "problem.npz")
            arrays = {"x": np.asarray(x), "labels": np.asarray(labels),
                      "y_onehot": np.asarray(jax.nn.one_hot(labels, CLASSES, dtype=jnp.float64)),
                      "V": np.asarray(V), "order": order}
            for i in range(len(WIDTHS) + 1):
                arrays[f"w{i}"] = np.asarray(params[f"dense_{i}"]["kernel"])
                arrays[f"b{i}"] = np.asarray(params[f"dense_{i}"]["bias"])
            np.savez(path, **arrays)
            proc = subprocess.run([args.peer_python, __file__, "--peer", path], capture_output=True,
                                  text=True)
            if proc.returncode != 0:
                print("curvlinops peer failed:\n" + proc.stderr, file=sys.stderr)
            else:
                peer_out = json.loads(proc.stdout.strip().splitlines()[-1])
    else:
        print(f"no peer environment at {args.peer_python}", file=sys.stderr)
    print(markdown(n, ours, peer_out))


def markdown(n, ours, peer_out):
    import numpy as np

    lines = [
        "## GGN and empirical Fisher vs curvlinops",
        "",
        f"tanh MLP {DIM}-{'-'.join(map(str, WIDTHS))}-{CLASSES} ({n:,} parameters), {N} synthetic "
        "examples (curvlinops: two batches of 256), float64. `G V` on "
        f"{K_VECS} random vectors: max relative column error ‖ours − theirs‖/‖theirs‖. λ_max: dynamics "
        "Lanczos (tol 1e-10) on `flat_ggn` / `flat_empirical_fisher` vs ARPACK on curvlinops' "
        "`to_scipy()`. Times: best of 5 after a warm-up (compilation excluded); torch on one "
        "thread, JAX with its default CPU client.",
        "",
    ]
    if peer_out is None:
        lines.append("(no curvlinops environment: dynamics side only)")
    else:
        lines.append(f"Peer: torch {peer_out['torch']}, curvlinops {peer_out['curvlinops']}.")
    lines += ["",
              "| loss / operator | max rel. error of G V | λ_max dynamics | λ_max curvlinops | "
              "rel. diff | matvec dynamics (ms) | matvec curvlinops (ms) | "
              f"{K_VECS} matvecs dynamics (ms) | {K_VECS} matvecs curvlinops (ms) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for key, o in ours.items():
        name = key.replace("/ef", " / empirical Fisher").replace("/ggn", " / GGN")
        if peer_out is None:
            lines.append(f"| {name} | — | {o['lambda_max']:.10g} | — | — | {o['matvec_s'] * 1e3:.2f} | — | "
                         f"{o[f'matmat{K_VECS}_s'] * 1e3:.2f} | — |")
            continue
        p = peer_out[key]
        theirs = np.asarray(p["AV"])
        err = np.max(np.linalg.norm(o["AV"] - theirs, axis=1) / np.linalg.norm(theirs, axis=1))
        rel = abs(o["lambda_max"] - p["lambda_max"]) / abs(p["lambda_max"])
        lines.append(f"| {name} | {err:.1e} | {o['lambda_max']:.10g} | {p['lambda_max']:.10g} | "
                     f"{rel:.1e} | {o['matvec_s'] * 1e3:.2f} | {p['matvec_s'] * 1e3:.2f} | "
                     f"{o[f'matmat{K_VECS}_s'] * 1e3:.2f} | {p[f'matmat{K_VECS}_s'] * 1e3:.2f} |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
