"""Diverged lanes in a vmapped sweep: what a sweep with one diverging point costs, against a healthy
sweep of the same size, with the diverged lane masked (held at its last finite state, as
``train_vmapped`` does) and, for reference, unmasked (the NaN lane kept computing; its Lanczos probe
then runs to ``max_iters`` every time and holds up the whole vmapped loop).

The EoS experiment (full-batch GD, sharpness every 10 steps, up to 300 Hessian-vector products per
probe), two points: ``vmap.lr=[0.5,0.6]`` (healthy) against ``vmap.lr=[0.5,50]`` (the second diverges
within a few steps). In-process through ``dynamics.run.run``; each configuration runs once after a
warm-up run that compiles. Also checks that the healthy point's metrics are the same in both sweeps.

Usage: python benchmarks/diverged_sweep.py [--steps 500]. Prints a markdown section for BENCHMARKS.md.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from dynamics.run import CONF_DIR, run  # noqa: E402
from dynamics.train import loop  # noqa: E402


def config(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return OmegaConf.to_object(compose(config_name="config", overrides=list(overrides)))


def timed(cfg, out: Path) -> tuple[float, dict]:
    start = time.perf_counter()
    summary = run(cfg, out)
    return time.perf_counter() - start, summary


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args()
    common = ["+exp=eos", f"train.steps={args.steps}", "claim.name=none", "claim.seeds=1",
              "progress=false"]
    healthy, diverging = "vmap.lr=[0.5,0.6]", "vmap.lr=[0.5,50.0]"
    hold = loop._hold
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        timed(config(*common, "train.steps=20", healthy), tmp / "warmup")  # compile the probes
        t_healthy, _ = timed(config(*common, healthy), tmp / "healthy")
        t_masked, masked = timed(config(*common, diverging), tmp / "masked")
        loop._hold = lambda mask, old, new: new  # the behaviour before masking
        try:
            t_unmasked, _ = timed(config(*common, diverging), tmp / "unmasked")
        finally:
            loop._hold = hold
        same = ((tmp / "healthy" / "points" / "0" / "metrics.jsonl").read_bytes()
                == (tmp / "masked" / "points" / "0" / "metrics.jsonl").read_bytes())
        bad = masked["vmap_points"][1]
    print(f"## Diverged lanes in a vmapped sweep (benchmarks/diverged_sweep.py, {args.steps} steps)\n")
    print("EoS experiment, 2 vmapped points, sharpness (Lanczos, ≤ 300 HVPs) every 10 steps; wall "
          "time of `dynamics.run.run` after a compiling warm-up, on this machine's CPU.\n")
    print("| sweep | wall time (s) | vs healthy |")
    print("|---|---|---|")
    print(f"| `{healthy}` (healthy) | {t_healthy:.1f} | 1.00× |")
    print(f"| `{diverging}`, diverged lane masked (now) | {t_masked:.1f} | "
          f"{t_masked / t_healthy:.2f}× |")
    print(f"| `{diverging}`, unmasked (before) | {t_unmasked:.1f} | {t_unmasked / t_healthy:.2f}× |")
    print(f"\nThe diverging point: status `{bad['status']}` at step {bad.get('diverged_step')}; "
          f"the healthy point's metrics.jsonl is {'byte-identical' if same else 'DIFFERENT'} in the "
          "healthy and the diverging sweep.")


if __name__ == "__main__":
    main()
