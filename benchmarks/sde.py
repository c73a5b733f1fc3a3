"""SDE simulation and scaling-rule sweeps on CPU: the targets of issue #4, measured.

1. The SGD, RMSprop and Adam SDE simulators on a 10,000-parameter noisy quadratic (diagonal
   Hessian h, constant diagonal gradient noise via ``diagonal_noise``), 1,000 paths × 100
   Euler–Maruyama steps in one vmapped, jitted call: the call ``sample_paths`` makes,
   ``jax.jit(jax.vmap(simulate))`` on ``jax.random.split(key, n)``, compiled ahead of time so that
   compile and run are timed apart (the script checks on a few paths that it returns exactly what
   ``sample_paths`` returns). Best of 3 runs. Side by side: a Python loop over one jitted
   single-path function (50 paths, extrapolated to 1,000). Correctness of the timed call: the
   end-of-run mean and variance of the SGD and RMSprop paths against ``sgd_sde_moments`` /
   ``rmsprop_sde_moments`` (RMSprop started at u0 = s, where its closed form is exact), as z-scores.
2. ``minibatch_noise`` (per-example gradients, Σ_B^{1/2} z = Gᵀz/√(nB)) in the SGD SDE of a tanh
   MLP with ~10k parameters on n = 512 examples: 1,000 paths × 1 step in one vmapped, jitted call.
3. The sqrt_scaling multirun of 3 points (`python -m dynamics.run -m +exp=sqrt_scaling
   scaling.rule=sqrt scaling.kappa=1,0.25,0.0625`), 8 vmapped seeds per point (the experiment's
   default) vs one seed per point (`vmap.seed=null`): whole command-line invocations, wall time.

Usage: python benchmarks/sde.py [--quick]  (--quick: fewer paths and steps, for a smoke run).
Prints a markdown section for BENCHMARKS.md.
"""

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from dynamics.io import load_runs
from dynamics.sde import (adam_sde, adaptive_constants, diagonal_noise, minibatch_noise,
                          rmsprop_sde, rmsprop_sde_moments, sample_paths, sgd_sde, sgd_sde_moments)

P = 10_000          # parameters of the quadratic
LR = 0.01           # η of SGD / RMSprop / Adam
NOISE_VAR = 4.0     # per-coordinate minibatch gradient-noise variance s
CHECK_COORDS = 8    # coordinates (spread over the curvatures) whose end moments are z-scored


def peak_rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def timed(fn):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - start, out


def quadratic_sims(num_steps):
    """The three simulators on f = ½ Σ h_i θ_i², h log-spaced in [0.005, 0.5], Σ_B = diag(s)."""
    h = jnp.asarray(np.logspace(np.log10(0.005), np.log10(0.5), P), jnp.float32)
    s = jnp.full(P, NOISE_VAR, jnp.float32)
    theta0 = jnp.ones(P, jnp.float32)
    noise = diagonal_noise(s)

    def grad(theta):
        return h * theta

    rms = adaptive_constants(LR, b2=0.999, eps=1e-8)
    adam = adaptive_constants(LR, b1=0.9, b2=0.999, eps=1e-8)
    k = num_steps
    sims = {
        # dt = η: one EM step per SGD step; t = kη.
        "sgd_sde": (lambda key: sgd_sde(grad, noise, theta0, lr=LR, dt=LR, num_steps=k, key=key,
                                        save_every=k), LR * k),
        # dt = η²: one EM step per optimizer step; t = kη².
        "rmsprop_sde": (lambda key: rmsprop_sde(grad, noise, theta0, sigma0=rms.sigma0,
                                                eps0=rms.eps0, c2=rms.c2, dt=rms.dt, num_steps=k,
                                                key=key, u0=s, save_every=k), rms.dt * k),
        "adam_sde": (lambda key: adam_sde(grad, noise, theta0, sigma0=adam.sigma0, eps0=adam.eps0,
                                          c1=adam.c1, c2=adam.c2, dt=adam.dt, num_steps=k, key=key,
                                          save_every=k), adam.dt * k),
    }
    closed = {
        "sgd_sde": lambda t: sgd_sde_moments(LR, h, s, theta0, t),
        "rmsprop_sde": lambda t: rmsprop_sde_moments(rms.sigma0, rms.eps0, h, s, theta0, t),
    }
    return sims, closed


def final_theta(path):
    y = path.y
    return np.asarray(y[:, -1] if isinstance(y, jax.Array) else y.theta[:, -1], np.float64)


def zscores(theta, mean, var):
    """z-scores of the sample mean and sample variance of each coordinate (n paths)."""
    n = theta.shape[0]
    z_mean = (theta.mean(0) - mean) / np.sqrt(var / n)
    z_var = (theta.var(0, ddof=1) - var) / (var * math.sqrt(2.0 / (n - 1)))
    return z_mean, z_var


def bench_simulators(num_paths, num_steps, loop_paths, repeats):
    sims, closed = quadratic_sims(num_steps)
    key = jax.random.key(0)
    keys = jax.random.split(key, num_paths)
    rows, checks = [], []
    # The timed call is sample_paths' own: check it bit for bit on 4 paths (and time sample_paths'
    # repeated calls, which re-trace and re-compile because it builds a fresh jit each call).
    sim4 = sims["sgd_sde"][0]
    ref = sample_paths(sim4, key, 4)
    t_sp, _ = timed(lambda: sample_paths(sim4, key, 4))
    aot4 = jax.jit(jax.vmap(sim4)).lower(jax.random.split(key, 4)).compile()
    t_aot4, same = timed(lambda: aot4(jax.random.split(key, 4)))
    same_as_sample_paths = bool(np.array_equal(np.asarray(ref.y), np.asarray(same.y)))
    for name, (sim, t_end) in sims.items():
        start = time.perf_counter()
        compiled = jax.jit(jax.vmap(sim)).lower(keys).compile()
        t_compile = time.perf_counter() - start
        times = []
        for _ in range(repeats):
            t, out = timed(lambda: compiled(keys))
            times.append(t)
        t_run = min(times)
        theta = final_theta(out)
        # Python loop over one jitted single path, first `loop_paths` keys, extrapolated.
        one = jax.jit(sim)
        jax.block_until_ready(one(keys[0]))
        start = time.perf_counter()
        looped = [jax.block_until_ready(one(keys[i])) for i in range(loop_paths)]
        t_loop = (time.perf_counter() - start) / loop_paths * num_paths
        loop_theta = np.stack([final_theta(jax.tree.map(lambda a: a[None], p)) for p in looped])
        loop_diff = float(np.max(np.abs(loop_theta[:, 0] - theta[:loop_paths])))
        finite = bool(np.isfinite(theta).all())
        rows.append((name, t_compile, t_run, t_loop, loop_diff, finite, peak_rss_gb()))
        if name in closed:
            mean, var = (np.asarray(a, np.float64) for a in closed[name](t_end))
            z_mean, z_var = zscores(theta, mean, var)
            idx = np.linspace(0, P - 1, CHECK_COORDS).astype(int)
            checks.append((name, t_end, float(np.abs(z_mean[idx]).max()),
                           float(np.abs(z_var[idx]).max()), float(np.mean(z_mean**2)),
                           float(np.mean(z_var**2))))
    return rows, checks, same_as_sample_paths, t_sp, t_aot4


def bench_small(num_paths, num_steps, repeats):
    """Where vmapping pays on CPU: a 100-parameter quadratic, where per-call overhead dominates."""
    p = 100
    h = jnp.asarray(np.logspace(-2, 0, p), jnp.float32)
    noise, theta0 = diagonal_noise(jnp.ones(p, jnp.float32)), jnp.ones(p, jnp.float32)

    def sim(key):
        return sgd_sde(lambda th: h * th, noise, theta0, lr=LR, dt=LR, num_steps=num_steps,
                       key=key, save_every=num_steps)

    keys = jax.random.split(jax.random.key(1), num_paths)
    compiled = jax.jit(jax.vmap(sim)).lower(keys).compile()
    t_vmap = min(timed(lambda: compiled(keys))[0] for _ in range(repeats))
    one = jax.jit(sim)
    jax.block_until_ready(one(keys[0]))
    start = time.perf_counter()
    for i in range(num_paths):
        jax.block_until_ready(one(keys[i]))
    return p, t_vmap, time.perf_counter() - start


def bench_minibatch(num_paths, num_steps, n=512, chunk=32):
    """SGD SDE of a tanh MLP 32-128-48-4 (10,612 parameters), noise from n per-example gradients."""
    din, widths, dout = 32, (128, 48), 4
    kx, kp, kt = jax.random.split(jax.random.key(2), 3)
    sizes = (din, *widths, dout)

    def init(key):
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            key, sub = jax.random.split(key)
            layers.append({"w": jax.random.normal(sub, (a, b)) / math.sqrt(a), "b": jnp.zeros(b)})
        return layers

    def apply(layers, x):
        for i, layer in enumerate(layers):
            x = x @ layer["w"] + layer["b"]
            x = jnp.tanh(x) if i < len(layers) - 1 else x
        return x

    x = jax.random.normal(kx, (n, din))
    y = apply(init(kt), x)              # teacher targets
    flat, unravel = ravel_pytree(init(kp))

    def example_loss(layers, ex):
        return 0.5 * jnp.sum((apply(layers, ex["x"]) - ex["y"]) ** 2)

    def loss(theta):
        return 0.5 * jnp.mean(jnp.sum((apply(unravel(theta), x) - y) ** 2, -1))

    noise = minibatch_noise(example_loss, {"x": x, "y": y}, 32, unravel=unravel, chunk_size=chunk)

    def sim(key):
        return sgd_sde(jax.grad(loss), noise, flat, lr=0.1, dt=0.1, num_steps=num_steps, key=key,
                       save_every=num_steps, observe=loss)

    keys = jax.random.split(jax.random.key(3), num_paths)
    start = time.perf_counter()
    compiled = jax.jit(jax.vmap(sim)).lower(keys).compile()
    t_compile = time.perf_counter() - start
    t_run, out = timed(lambda: compiled(keys))
    losses = np.asarray(out.y)
    return dict(params=int(flat.size), n=n, chunk=chunk, t_compile=t_compile, t_run=t_run,
                loss0=float(losses[0, 0]), loss_mean=float(losses[:, -1].mean()),
                loss_std=float(losses[:, -1].std()), finite=bool(np.isfinite(losses).all()),
                rss=peak_rss_gb())


def cli(*args, env):
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dynamics.run", *args], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def bench_sweep(steps):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    common = ["-m", "+exp=sqrt_scaling", "scaling.rule=sqrt", "scaling.kappa=1,0.25,0.0625"]
    if steps is not None:
        common.append(f"train.steps={steps}")
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, extra in (("8 seeds", []), ("1 seed", ["vmap.seed=null"])):
            sweep_dir = f"{tmp}/{label.replace(' ', '_')}"
            wall = cli(*common, *extra, f"hydra.sweep.dir={sweep_dir}", env=env)
            runs = load_runs(sweep_dir)
            assert {r["status"] for r in runs} == {"finished"}, (label, runs)
            per_point = {}
            for i in range(3):  # wall time of each point; κ and steps from its (first) run
                summary = json.loads(Path(f"{sweep_dir}/{i}/summary.json").read_text())
                first = (Path(f"{sweep_dir}/{i}/points/0/summary.json") if "vmap_points" in summary
                         else Path(f"{sweep_dir}/{i}/summary.json"))
                point = json.loads(first.read_text())
                per_point[point["scaling"]["kappa"]] = (summary["wall_time_s"],
                                                        point["steps_completed"])
            out[label] = (wall, len(runs), per_point)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer paths and steps (smoke run)")
    args = parser.parse_args()
    if args.quick:
        num_paths, num_steps, loop_paths, repeats = 100, 20, 5, 2
        mb_paths, mb_steps, sweep_steps = 20, 1, 30
    else:
        num_paths, num_steps, loop_paths, repeats = 1000, 100, 50, 3
        mb_paths, mb_steps, sweep_steps = 1000, 1, None
    t0 = time.perf_counter()
    rows, checks, same, t_sp, t_aot4 = bench_simulators(num_paths, num_steps, loop_paths, repeats)
    small_p, t_small_vmap, t_small_loop = bench_small(num_paths, num_steps, repeats)
    mb = bench_minibatch(mb_paths, mb_steps)
    sweep = bench_sweep(sweep_steps)
    total = time.perf_counter() - t0

    work = num_paths * P * num_steps
    quick = " --quick" if args.quick else ""
    lines = [
        "## SDE simulation and scaling-rule sweeps",
        "",
        f"Issue #4's targets on this 2-core CPU (JAX {jax.__version__}, float32, "
        f"`benchmarks/sde.py{quick}`; the whole script ran in {total:.0f} s).",
        "",
        f"**SDE simulators.** {num_paths:,} paths of a {P:,}-parameter noisy quadratic "
        "(f = ½ Σ h_i θ_i², h log-spaced in [0.005, 0.5], Σ_B = diag(s) with s = "
        f"{NOISE_VAR:g} via `diagonal_noise`, θ0 = 1, η = {LR}), {num_steps} Euler–Maruyama "
        "steps (dt = η for SGD, η² for RMSprop/Adam; RMSprop β2 = 0.999, Adam β = (0.9, 0.999)), "
        "the final state saved, in ONE vmapped, jitted call — the call `sample_paths` makes, "
        "`jax.jit(jax.vmap(simulate))(jax.random.split(key, n))`, compiled ahead of time "
        f"(identical output to `sample_paths` on 4 paths: {same}). Run time: best of {repeats}. "
        f"Loop: a Python loop over one jitted single-path function, {loop_paths} paths timed "
        f"and **extrapolated** to {num_paths:,}.",
        "",
        "| simulator | compile (s) | vmapped run (s) | per EM step (ms) "
        "| paths·params·steps / s | loop, extrapolated (s) | loop / vmapped "
        "| peak RSS so far (GB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, t_compile, t_run, t_loop, _, _, rss in rows:
        lines.append(f"| `{name}` | {t_compile:.2f} | {t_run:.2f} "
                     f"| {1e3 * t_run / num_steps:.0f} | {work / t_run:.2e} | {t_loop:.1f} "
                     f"| {t_loop / t_run:.2f}× | {rss:.2f} |")
    loop_diff = max(r[4] for r in rows)
    all_finite = all(r[5] for r in rows)
    speedups = [r[3] / r[2] for r in rows]
    lines += [
        "",
        f"Paths of the loop equal the vmapped call's to {loop_diff:.1e} (final θ, max abs). On "
        "CPU the work is elementwise and dominated by drawing the Gaussian increments "
        "(threefry), so vmapping saves only the per-call overhead, small against the "
        f"{P * num_steps:,} element-updates of a path here (loop / vmapped "
        f"{min(speedups):.2f}–{max(speedups):.2f}×). For a {small_p}-parameter quadratic "
        f"({num_paths:,} paths, {num_steps} steps, `sgd_sde`), where that overhead dominates: "
        f"vmapped {t_small_vmap:.3f} s vs loop {t_small_loop:.2f} s (all {num_paths:,} paths "
        f"looped), **{t_small_loop / t_small_vmap:.0f}× faster**. `sample_paths` re-traces and "
        "re-compiles on every call (it builds a fresh `jax.jit` each time): "
        f"{t_sp:.2f} s per call on 4 paths vs {t_aot4:.3f} s for the compiled call.",
        "",
        f"Correctness of the timed call ({num_paths:,} paths): z-scores of the end-of-run sample "
        f"mean and variance against the closed forms, on {CHECK_COORDS} coordinates spread over "
        f"h (max |z|), and the mean z² over all {P:,} coordinates (≈ 1 if right):",
        "",
        "| simulator | closed form | t | max \\|z\\| mean | max \\|z\\| variance "
        "| mean z² (mean) | mean z² (variance) |",
        "|---|---|---|---|---|---|---|",
    ]
    forms = {"sgd_sde": "`sgd_sde_moments`", "rmsprop_sde": "`rmsprop_sde_moments` (u0 = s)"}
    for name, t_end, zm, zv, zm2, zv2 in checks:
        lines.append(f"| `{name}` | {forms[name]} | {t_end:g} | {zm:.2f} | {zv:.2f} "
                     f"| {zm2:.2f} | {zv2:.2f} |")
    z_ok = all(max(c[2], c[3]) < 4 and abs(c[4] - 1) < 0.15 and abs(c[5] - 1) < 0.15
               for c in checks)
    runs = [r[2] for r in rows]
    met = num_paths >= 1000 and all_finite and z_ok
    lines += [
        "",
        "Target (≥ 1,000 paths of a 10k-parameter problem in one vmapped, jitted call on CPU): "
        f"**{'met' if met else 'not met'}{' (--quick: too few paths)' if args.quick else ''}** "
        f"— {num_paths:,} paths × {P:,} parameters × "
        f"{num_steps} steps in {min(runs):.1f}–{max(runs):.1f} s per simulator (moments "
        f"{'agree' if z_ok else 'DISAGREE'} with the closed forms).",
        "",
    ]
    mb_path_step = mb["t_run"] / (mb_paths * mb_steps)
    lines += [
        "**Minibatch noise.** `minibatch_noise` (per-example gradients, "
        "Σ_B^{1/2} z = Gᵀz/√(nB), B = 32, "
        f"chunks of {mb['chunk']} examples) in `sgd_sde` of a tanh MLP 32-128-48-4 "
        f"({mb['params']:,} parameters, MSE on n = {mb['n']} teacher examples, η = dt = 0.1), "
        f"{mb_paths:,} paths × {mb_steps} step{'s' if mb_steps > 1 else ''} in one vmapped, "
        "jitted call, observing the loss:",
        "",
        "| paths × steps | compile (s) | run (s) | per path-step (ms) "
        "| per EM step, all paths (s) | peak RSS so far (GB) |",
        "|---|---|---|---|---|---|",
        f"| {mb_paths:,} × {mb_steps} | {mb['t_compile']:.2f} | {mb['t_run']:.2f} "
        f"| {1e3 * mb_path_step:.1f} | {mb['t_run'] / mb_steps:.2f} | {mb['rss']:.2f} |",
        "",
        f"Each path-step computes {mb['n']} per-example gradients (the noise) and the full-batch "
        f"gradient; loss {mb['loss0']:.3f} at the start, {mb['loss_mean']:.3f} ± "
        f"{mb['loss_std']:.3f} over the paths at the end (finite: {mb['finite']}). A path-step "
        f"costs about {mb_path_step / (rows[0][2] / (num_paths * num_steps)):.0f}× one of "
        "`sgd_sde` on the diagonal-noise quadratic above.",
        "",
    ]
    w8, n8, p8 = sweep["8 seeds"]
    w1, n1, p1 = sweep["1 seed"]
    steps_note = "" if sweep_steps is None else f" train.steps={sweep_steps}"
    lines += [
        "**sqrt_scaling multirun, 3 points.** `python -m dynamics.run -m +exp=sqrt_scaling "
        f"scaling.rule=sqrt scaling.kappa=1,0.25,0.0625{steps_note}`, whole command-line "
        "invocation (start-up, data, compilation, training, evals, outputs), Hydra's basic "
        "launcher running the points one after another; each point is one vmapped program over "
        "8 seeds (`vmap.seed`, the experiment's default) or a single seed (`vmap.seed=null`):",
        "",
        "| launch | runs | wall time (s) "
        "| κ = 1 / ¼ / 1⁄16 per point (s, from summary.json) | ratio |",
        "|---|---|---|---|---|",
    ]
    for label, wall, n_runs, per in (("1 seed per point", w1, n1, p1),
                                     ("8 vmapped seeds per point", w8, n8, p8)):
        pts = " / ".join(f"{per[k][0]:.1f}" for k in sorted(per, reverse=True))
        ratio = "1.0×" if wall == w1 else f"{w8 / w1:.1f}× the time for 8× the runs"
        lines.append(f"| {label} | {n_runs} | {wall:.1f} | {pts} | {ratio} |")
    steps = " / ".join(str(p8[k][1]) for k in sorted(p8, reverse=True))
    lines += [
        "",
        f"Steps per point κ = 1 / ¼ / 1⁄16: {steps} (1/κ × the base steps, same samples). Eight "
        f"seeds cost {w8 / w1:.1f}× one seed: {w8 / n8:.1f} s per run vs {w1 / n1:.1f} s.",
        "",
        "Target (a 3-point sqrt_scaling multirun finishes in minutes on CPU; taken as < 10 min): "
        f"**{'met' if w8 < 600 else 'not met'}** — {w8:.0f} s with 8 seeds per point "
        f"({w1:.0f} s with one).",
        "",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
