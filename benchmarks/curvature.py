"""Top Hessian eigenvalue: dynamics vs PyHessian vs scipy ARPACK, side by side in one run.

Same weights (tanh MLP 32-200-200-10, 48,610 parameters), same data (1,000 synthetic examples), same loss
(MSE ½‖f − y‖², mean over examples), float32, cold start, each library with its default CPU threads. Each solver is asked for a
relative tolerance of 1e-3 in its own sense (dynamics: residual ‖Hv − λv‖ ≤ tol·|λ|; ARPACK: relative
eigenvalue accuracy; PyHessian: relative change of λ between iterations); the achieved error against a
tight ARPACK reference (tol = 0) is reported next to the time. Also the HVP/gradient cost ratio and the
average HVPs per warm-started sharpness measurement in the EoS experiment.

Usage: python benchmarks/curvature.py [--peer-python .venv-bench/bin/python]
Prints a markdown section for BENCHMARKS.md.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from scipy.sparse.linalg import LinearOperator, eigsh

from timing import best_of, peer_env, save_mlp_problem  # noqa: E402  (benchmarks/timing.py)

from dynamics.curvature import hvp, top_eigenvalue, top_eigenvalues
from dynamics.data import build_dataset
from dynamics.losses import mse
from dynamics.models import build_model, num_params

TOL = 1e-3
ROOT = Path(__file__).resolve().parents[1]


def problem():
    data = build_dataset("synthetic", jax.random.key(0), n_train=1000, n_test=10, dim=32,
                         num_classes=10)
    model = build_model("mlp", (32,), 10, widths=[200, 200], activation="tanh")
    params = model.init(jax.random.key(1))
    y = jax.nn.one_hot(data.y_train, 10)
    return model, params, data.x_train, y


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--peer-python", default=str(ROOT / ".venv-bench" / "bin" / "python"))
    args = parser.parse_args()

    model, params, x, y = problem()
    n = num_params(params)
    flat, unravel = ravel_pytree(params)

    def loss(p, x, y):
        return mse(model.apply(p, x), y)

    grad = jax.jit(jax.grad(loss))
    hv = jax.jit(lambda p, v, x, y: hvp(lambda q: loss(q, x, y), p, v))
    flat_hv = jax.jit(lambda f, v, x, y: ravel_pytree(hv(unravel(f), unravel(v), x, y))[0])
    key = jax.random.key(2)
    v0 = jax.random.normal(key, flat.shape)

    t_grad, _ = best_of(lambda: jax.block_until_ready(grad(params, x, y)), 10)
    t_hvp, _ = best_of(lambda: jax.block_until_ready(flat_hv(flat, v0, x, y)), 10)

    def arpack(tol):
        count = [0]

        def mv(v):
            count[0] += 1
            return np.asarray(flat_hv(flat, jnp.asarray(v, jnp.float32), x, y), np.float64)

        op = LinearOperator((n, n), matvec=mv, dtype=np.float32)
        value = eigsh(op, k=1, which="LA", tol=tol, v0=np.asarray(v0))[0][0]
        return float(value), count[0]

    reference, _ = arpack(0.0)

    lanczos = jax.jit(lambda p, x, y, k: top_eigenvalues(lambda q: loss(q, x, y), p, 1, key=k,
                                                         method="lanczos", tol=TOL, max_iters=1000))
    power = jax.jit(lambda p, x, y, k: top_eigenvalue(lambda q: loss(q, x, y), p, key=k, tol=TOL,
                                                      max_iters=1000))
    rows = []
    t, res = best_of(lambda: jax.block_until_ready(lanczos(params, x, y, key)))
    rows.append(("dynamics `top_eigenvalues` (Lanczos)", t, float(res.values[0]), int(res.num_matvecs)))
    t, res = best_of(lambda: jax.block_until_ready(power(params, x, y, key)))
    rows.append(("dynamics `top_eigenvalue` (power)", t, float(res.value), int(res.num_matvecs)))
    t, (value, count) = best_of(lambda: arpack(TOL))
    rows.append(("scipy ARPACK `eigsh` on dynamics' jitted HVP", t, value, count))

    if Path(args.peer_python).exists():
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "problem.npz")
            save_mlp_problem(path, params, 3, x=x, y=y)
            env = peer_env()
            for tol in (TOL, 1e-6):  # its own tol (relative change of λ), and one that matches accuracy
                out = subprocess.run([args.peer_python, str(Path(__file__).parent / "pyhessian_peer.py"),
                                      path, str(tol), "3"], capture_output=True, text=True, env=env)
                if out.returncode != 0:
                    print("PyHessian peer failed:\n" + out.stderr, file=sys.stderr)
                    break
                peer = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append((f"PyHessian 0.1 power iteration, its tol {tol:g} (torch {peer['torch']})",
                             peer["seconds"], peer["value"], None))
    else:
        print(f"no peer environment at {args.peer_python}: run `make bench`", file=sys.stderr)

    eos_matvecs = eos_tracking()
    print(markdown(n, reference, rows, t_grad, t_hvp, eos_matvecs))


def eos_tracking():
    """Average HVPs per warm-started sharpness measurement over the default EoS run."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from dynamics.io import read_metrics
    from dynamics.run import CONF_DIR, run

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = OmegaConf.to_object(compose(config_name="config", overrides=["+exp=eos"]))
    with tempfile.TemporaryDirectory() as tmp:
        run(cfg, tmp)
        counts = [r["sharpness_matvecs"] for r in read_metrics(tmp) if "sharpness_matvecs" in r]
    return float(np.mean(counts[1:])), int(counts[0]), len(counts)


def markdown(n, reference, rows, t_grad, t_hvp, eos):
    ours = rows[0][1]
    lines = [
        f"## Top Hessian eigenvalue, cold start, relative tolerance {TOL:g}",
        "",
        f"tanh MLP 32-200-200-10 ({n:,} parameters), 1,000 synthetic examples, MSE, float32. "
        f"Reference λ_max = {reference:.6g} (ARPACK, tol 0). Time: best of 3 after one warm-up call "
        "(compilation excluded).",
        "",
        "| solver | time (s) | HVPs | λ_max | rel. error | time / dynamics Lanczos |",
        "|---|---|---|---|---|---|",
    ]
    for name, t, value, count in rows:
        lines.append(f"| {name} | {t:.3f} | {count if count is not None else '—'} | {value:.6g} | "
                     f"{abs(value - reference) / abs(reference):.1e} | {t / ours:.1f}× |")
    lines += [
        "",
        "## Cost of one Hessian-vector product",
        "",
        f"Forward-over-reverse HVP {t_hvp * 1e3:.2f} ms vs gradient {t_grad * 1e3:.2f} ms: "
        f"ratio **{t_hvp / t_grad:.2f}** (same model and data).",
        "",
        "## Warm-started sharpness tracking in the EoS experiment",
        "",
        f"`python -m dynamics.run +exp=eos` (Lanczos, tol 1e-3, warm start from the previous "
        f"eigenvector): **{eos[0]:.1f} HVPs** per measurement on average over {eos[2] - 1} warm-started "
        f"measurements (the cold first one took {eos[1]}).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
