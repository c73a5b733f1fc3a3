"""Sweeps: a 16-point learning-rate sweep of the EoS experiment as one vmapped run vs 16 sequential Hydra
runs, and data-parallel training on 4 forced host devices vs 1, timed side by side in one run.

Both sides are whole command-line invocations (start-up, compilation, training, probes, outputs), as a
researcher would launch them: `python -m dynamics.run -m +exp=eos optimizer.lr=<16 values>` (Hydra's
basic launcher runs the points one after another in one process) against
`python -m dynamics.run +exp=eos 'vmap.lr=[<16 values>]'`. Per-point agreement is reported on the first
100 steps' losses (before the edge of stability, where float32 rounding differences are not yet
amplified) and on the verdict numbers.

Usage: python benchmarks/sweep.py [--steps 1000]. Prints a markdown section for BENCHMARKS.md.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dynamics.io import load_runs

LRS = [round(x, 4) for x in np.linspace(0.3, 0.7, 16)]


def cli(*args, env=None):
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dynamics.run", *args], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def by_lr(rows):
    return {round(r["hparams.lr"], 4): r for r in rows}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    common = ["+exp=eos", f"train.steps={args.steps}", "verdict.criteria.expected_crossing=null"]
    sweep, grid = "optimizer.lr=" + ",".join(map(str, LRS)), "vmap.lr=[" + ",".join(map(str, LRS)) + "]"
    with tempfile.TemporaryDirectory() as tmp:
        t_seq = cli("-m", *common, sweep, f"hydra.sweep.dir={tmp}/seq", env=env)
        t_vmap = cli(*common, grid, f"hydra.run.dir={tmp}/vmap", env=env)
        off = ["+exp=eos", f"train.steps={args.steps}", "probes.sharpness.every=0",
               "probes.eval.every=0", "verdict.name=none", "~verdict.criteria.expected_crossing"]
        t_seq_off = cli("-m", *off, sweep, f"hydra.sweep.dir={tmp}/seq_off", env=env)
        t_vmap_off = cli(*off, grid, f"hydra.run.dir={tmp}/vmap_off", env=env)
        seq, vmap = by_lr(load_runs(f"{tmp}/seq", metrics=True)), by_lr(
            load_runs(f"{tmp}/vmap", metrics=True))
        for name in ("seq", "vmap", "seq_off", "vmap_off"):  # every point really ran
            statuses = {r["status"] for r in load_runs(f"{tmp}/{name}")}
            assert statuses == {"finished"}, (name, statuses)
        early, crossing, median = [], [], []
        for lr in LRS:
            a = np.array([m["loss"] for m in seq[lr]["metrics"][:100]])
            b = np.array([m["loss"] for m in vmap[lr]["metrics"][:100]])
            early.append(float(np.max(np.abs(a - b) / np.abs(a))))
            crossing.append((seq[lr].get("verdict.crossing_step"), vmap[lr].get("verdict.crossing_step")))
            if seq[lr].get("verdict.ratio_median") and vmap[lr].get("verdict.ratio_median"):
                median.append(abs(seq[lr]["verdict.ratio_median"] - vmap[lr]["verdict.ratio_median"]))
        smoke = ["+exp=smoke", "train.batch_size=null", "data.n_train=1024", "train.steps=400",
                 "model.widths=[256,256]"]
        forced = {**env, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
        t_one = cli(*smoke, f"hydra.run.dir={tmp}/one", env=forced)
        t_four = cli(*smoke, "parallel.data=true", f"hydra.run.dir={tmp}/four", env=forced)
        one = [json.loads(x) for x in Path(f"{tmp}/one/metrics.jsonl").read_text().splitlines()]
        four = [json.loads(x) for x in Path(f"{tmp}/four/metrics.jsonl").read_text().splitlines()]
        dev_err = max(abs(a["loss"] - b["loss"]) / abs(a["loss"]) for a, b in zip(one, four))
    same_crossing = sum(a == b for a, b in crossing)
    print("\n".join([
        "## Sweeps: vmapped vs sequential, and 4 devices vs 1",
        "",
        f"16-point learning-rate sweep of `+exp=eos` (η = {LRS[0]} … {LRS[-1]}, {args.steps} full-batch "
        "GD steps each, sharpness every 10 steps), whole command-line invocations:",
        "",
        "| launch | wall time (s) | ratio |",
        "|---|---|---|",
        f"| 16 sequential Hydra runs (`-m`, basic launcher) | {t_seq:.1f} | 1.0× |",
        f"| one vmapped run (`vmap.lr=[…]`) | {t_vmap:.1f} | **{t_seq / t_vmap:.1f}× faster** |",
        f"| same, probes off: 16 sequential runs | {t_seq_off:.1f} | 1.0× |",
        f"| same, probes off: one vmapped run | {t_vmap_off:.1f} | **{t_seq_off / t_vmap_off:.1f}× "
        "faster** |",
        "",
        "On this 2-core CPU the vmapped run is compute-bound: it removes the per-run start-up and "
        "compilation, but the 16 points' arithmetic is the same and the vmapped Lanczos of each "
        "sharpness measurement runs until the slowest point has converged, so the probes dominate.",
        "",
        f"Agreement: the first 100 steps' losses differ by at most {max(early):.1e} (relative); the "
        f"crossing step of 2/η is the same in {same_crossing}/16 points and the median "
        f"sharpness/(2/η) differs by at most {max(median) if median else float('nan'):.3f} (the "
        "trajectories decorrelate in detail after the crossing, where the dynamics amplify float32 "
        "rounding).",
        "",
        "Data parallelism on CPU with 4 forced host devices (`parallel.data=true`, batch sharded, params "
        "replicated) vs 1 device, MLP 8-256-256-4 on 1,024 examples, 400 full-batch steps with "
        f"sharpness probes: {t_one:.1f} s vs {t_four:.1f} s (throughput ratio "
        f"{t_one / t_four:.2f}; the 4 'devices' share this machine's 2 cores, so no speed-up is "
        f"expected here); losses agree to {dev_err:.1e} relative.",
        "",
    ]))


if __name__ == "__main__":
    main()
