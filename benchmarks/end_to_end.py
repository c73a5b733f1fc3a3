"""End to end: 1,000 full-batch GD steps of the 48k MLP with λ_max every 10 steps, dynamics vs torch.

Same weights and data as benchmarks/curvature.py (tanh MLP 32-200-200-10, 48,810 parameters, 1,000
examples, MSE ½‖f − y‖² averaged over examples, float32), GD with η = 0.5 (2/η = 4: the sharpness
rises towards the edge of stability), 100 warm-started λ_max measurements at tolerance 1e-3, the
loss read back every step. Whole loops timed from the first step to the last, compilation included:

- dynamics, ``Tracker``: the loop a user writes (a jitted GD step, ``tracker(step, params, x, y,
  loss=loss)`` every step; Lanczos warm-started from the previous eigenvector);
- dynamics, chunked: 10 GD steps per jitted ``lax.scan`` call, the tracker at each chunk boundary
  (the shape of the dynamics trainer);
- torch, plain loop (run by this file with ``--torch-peer`` in the side environment): the same steps
  with ``torch.autograd``, λ_max by scipy ARPACK ``eigsh(k=1, which="LA", tol=1e-3)`` on a
  double-backward HVP, warm-started with ``v0`` = the previous eigenvector: the recipe of the fastest
  peers (hessian-eigenthings' Lanczos and curvlinops' operators both hand a torch HVP to ARPACK).

Each loop runs in a fresh process (``--dynamics-peer``, ``--torch-peer``) without JAX's persistent
compilation cache, so "cold" is a first run with nothing compiled (only the problem set-up, which is
not timed, ran before it), and the warm rerun follows in the same process. Wall and CPU seconds and the
load average before and after each process are reported: on a shared machine torch's OpenMP threads
spin while descheduled, so its times grow much faster with the load than JAX's.

Usage: python benchmarks/end_to_end.py [--peer-python /tmp/tvenv/bin/python]
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

from timing import peer_env, save_mlp_problem  # benchmarks/timing.py

STEPS, EVERY, LR, TOL = 1000, 10, 0.5, 1e-3
ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------ torch side
def torch_peer(path: str, out_path: str, steps: str) -> None:
    global STEPS
    STEPS = int(steps)
    import numpy as np
    import torch
    from scipy.sparse.linalg import LinearOperator, eigsh
    from torch_mlp import load_tanh_mlp  # benchmarks/torch_mlp.py

    model, data = load_tanh_mlp(path)
    x, y = torch.tensor(data["x"]), torch.tensor(data["y"])
    params = list(model.parameters())
    n = sum(p.numel() for p in params)

    def loss_fn():
        return 0.5 * ((model(x) - y) ** 2).sum(dim=1).mean()

    def sharpness(v0):
        grads = torch.autograd.grad(loss_fn(), params, create_graph=True)
        count = [0]

        def mv(v):
            count[0] += 1
            vt = torch.from_numpy(np.asarray(v, np.float32).reshape(-1))
            chunks, i = [], 0
            for p in params:
                chunks.append(vt[i:i + p.numel()].view_as(p))
                i += p.numel()
            hv = torch.autograd.grad(grads, params, grad_outputs=chunks, retain_graph=True)
            return torch.cat([h.reshape(-1) for h in hv]).numpy()

        op = LinearOperator((n, n), matvec=mv, dtype=np.float32)
        vals, vecs = eigsh(op, k=1, which="LA", tol=TOL, v0=v0)
        return float(vals[0]), vecs[:, 0], count[0]

    start, cpu = time.perf_counter(), time.process_time()
    v0, lams, hvps, losses = None, [], [], []
    for step in range(STEPS):
        if step % EVERY == 0:
            lam, v0, count = sharpness(v0)
            lams.append(lam)
            hvps.append(count)
        loss = loss_fn()
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= LR * g
        losses.append(loss.item())
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    with open(out_path, "w") as f:
        json.dump({"seconds": seconds, "cpu": cpu, "sharpness": lams, "hvps": hvps, "loss": losses,
                   "torch": torch.__version__, "threads": torch.get_num_threads()}, f)


# --------------------------------------------------------------------------------- dynamics side
def dynamics_peer(name: str, out_path: str, steps: str) -> None:
    """Run one dynamics loop twice in this (fresh) process: cold, then warm; write the JSON."""
    global STEPS
    STEPS = int(steps)
    import jax
    import numpy as np
    from curvature import problem  # benchmarks/curvature.py

    from dynamics import Tracker
    from dynamics.losses import mse

    model, params0, x, y = problem()

    def loss_fn(p, x, y):
        return mse(model.apply(p, x), y)

    def gd(p, x, y):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        return jax.tree.map(lambda a, b: a - LR * b, p, g), loss

    step_fn = jax.jit(gd)

    @jax.jit
    def chunk(p, x, y):
        return jax.lax.scan(lambda q, _: gd(q, x, y), p, None, length=EVERY)

    def per_step():
        tracker = Tracker(loss_fn, every=EVERY, tol=TOL, max_iters=200)
        params = params0
        for step in range(STEPS):
            new_params, loss = step_fn(params, x, y)
            tracker(step, params, x, y, loss=loss)
            params = new_params
        return tracker.rows

    def chunked():
        tracker = Tracker(loss_fn, every=EVERY, tol=TOL, max_iters=200)
        params, rows = params0, []
        for step in range(0, STEPS, EVERY):
            row = tracker(step, params, x, y)
            params, losses = chunk(params, x, y)
            losses = np.asarray(losses)
            row["loss"] = float(losses[0])
            rows.append(row)
            rows.extend({"step": step + i, "loss": float(v)} for i, v in enumerate(losses[1:], 1))
        return rows

    fn = {"tracker": per_step, "chunked": chunked}[name]
    times = []
    for _ in range(2):  # first: cold (nothing compiled yet in this process); second: warm
        start, cpu = time.perf_counter(), time.process_time()
        rows = fn()
        times.append((time.perf_counter() - start, time.process_time() - cpu))
    with open(out_path, "w") as f:
        json.dump({"times": times, "rows": rows, "jax": jax.__version__}, f)


def run_peer(python: str, args: list[str], out: str, env: dict) -> dict | None:
    """Run ``python end_to_end.py ARGS`` in a fresh process; its JSON plus the load around it."""
    load_before = os.getloadavg()[0]
    res = subprocess.run([python, __file__, *args], capture_output=True, text=True, env=env, check=False,
                         cwd=str(Path(__file__).parent))
    if res.returncode != 0:
        print(f"{args[0]} failed:\n" + res.stderr, file=sys.stderr)
        return None
    result = json.loads(Path(out).read_text())
    result["load"] = (load_before, os.getloadavg()[0])
    return result


def main():
    global STEPS
    parser = argparse.ArgumentParser()
    parser.add_argument("--peer-python", default=str(ROOT / ".venv-bench" / "bin" / "python"))
    parser.add_argument("--torch-peer", nargs=3, metavar=("NPZ", "OUT", "STEPS"))
    parser.add_argument("--dynamics-peer", nargs=3, metavar=("LOOP", "OUT", "STEPS"))
    parser.add_argument("--steps", type=int, default=STEPS,
                        help="GD steps (default 1000; fewer only for a quick look on a busy machine)")
    args = parser.parse_args()
    if args.torch_peer:
        torch_peer(*args.torch_peer)
        return
    if args.dynamics_peer:
        dynamics_peer(*args.dynamics_peer)
        return

    from curvature import problem  # benchmarks/curvature.py

    STEPS = args.steps
    # a cold run compiles everything: no persistent compilation cache in the dynamics processes
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env["DYNAMICS_COMPILE_CACHE"] = "0"
    runs, peer = {}, None
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("tracker", "chunked"):
            out = os.path.join(tmp, f"{name}.json")
            result = run_peer(sys.executable, ["--dynamics-peer", name, out, str(STEPS)], out, env)
            if result is not None:
                runs[name] = result
        if Path(args.peer_python).exists():
            _, params, x, y = problem()
            path, out = os.path.join(tmp, "problem.npz"), os.path.join(tmp, "out.json")
            save_mlp_problem(path, params, 3, x=x, y=y)
            peer = run_peer(args.peer_python, ["--torch-peer", path, out, str(STEPS)], out,
                            peer_env())
        else:
            print(f"no peer environment at {args.peer_python}", file=sys.stderr)
    print(markdown(runs, peer))


def markdown(runs, peer):
    import numpy as np

    lines = [f"## End to end: {STEPS:,} GD steps with λ_max every {EVERY} steps "
             "(benchmarks/end_to_end.py)", "",
             f"tanh MLP 32-200-200-10 (48,810 parameters), 1,000 examples, MSE, float32, full-batch GD "
             f"η = {LR} (2/η = {2 / LR:g}), λ_max every {EVERY} steps ({STEPS // EVERY} "
             f"measurements, tol {TOL:g}, warm-started), loss read back every step. Whole loop "
             "wall time (CPU seconds of the process in brackets), each loop in a fresh process "
             f"on {os.cpu_count()} cores: the first run is cold (compilation included, no persistent "
             "compilation cache), then a warm rerun in the same process. Load average (1 min) before "
             "→ after each process in the last column.", "",
             "| loop | time (s) | warm rerun (s) | HVPs per measurement (first, then mean) | "
             "mean λ_max, last 20 | final loss | torch / this | load |",
             "|---|---|---|---|---|---|---|---|"]
    base = peer["seconds"] if peer else None

    def summary(lams, hvps, losses):
        return (f"{hvps[0]}, then {np.mean(hvps[1:]):.1f}", f"{np.mean(lams[-20:]):.4f}",
                f"{losses[-1]:.4g}")

    names = {"tracker": "dynamics `Tracker` in a plain loop (jitted step per iteration)",
             "chunked": "dynamics `Tracker`, 10 steps per jitted `lax.scan` call"}
    for key, run in runs.items():
        (cold, cold_cpu), (warm, warm_cpu) = run["times"]
        rows = run["rows"]
        measured = [r for r in rows if "sharpness" in r]
        losses = [r["loss"] for r in sorted(rows, key=lambda r: r["step"])]
        hv, lam, fl = summary([r["sharpness"] for r in measured],
                              [r["sharpness_matvecs"] for r in measured], losses)
        ratio = f"**{base / cold:.1f}×** ({base / warm:.1f}× warm)" if base else "n/a"
        lines.append(f"| {names[key]} | {cold:.2f} ({cold_cpu:.1f}) | {warm:.2f} ({warm_cpu:.1f}) | "
                     f"{hv} | {lam} | {fl} | {ratio} | {run['load'][0]:.1f} → {run['load'][1]:.1f} |")
    if peer:
        hv, lam, fl = summary(peer["sharpness"], peer["hvps"], peer["loss"])
        lines.append(f"| torch {peer['torch']} plain loop, ARPACK `eigsh` warm `v0` on a "
                     f"double-backward HVP ({peer['threads']} threads) | {peer['seconds']:.2f} "
                     f"({peer['cpu']:.1f}) | — | {hv} | {lam} | {fl} | 1 | "
                     f"{peer['load'][0]:.1f} → {peer['load'][1]:.1f} |")
        if "tracker" in runs:
            best = base / runs["tracker"]["times"][0][0]
            lines += ["", f"Goal ≥ 5× with the Tracker loop (cold, compilation included): "
                      f"{'met' if best >= 5 else 'not met'} ({best:.1f}×)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
