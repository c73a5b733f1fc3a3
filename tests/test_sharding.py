"""Data-parallel training over 4 forced host devices gives the single-device metrics."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest


def run_cli(run_dir, *args):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    proc = subprocess.run([sys.executable, "-m", "dynamics.run", "+exp=smoke", *args,
                           f"hydra.run.dir={run_dir}"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow  # make test-all (two 4-device runs)
@pytest.mark.parametrize("batch", ["null", "16"])
def test_sharded_training_equals_single_device(tmp_path, batch):
    single = run_cli(tmp_path / "one", f"train.batch_size={batch}")
    sharded = run_cli(tmp_path / "four", f"train.batch_size={batch}", "parallel.data=true")
    assert "data parallel over 4 devices" in (tmp_path / "four" / "run.log").read_text()
    assert [r["step"] for r in single] == [r["step"] for r in sharded]
    for key in ("loss", "grad_norm", "sharpness", "test_loss"):
        a = np.array([r[key] for r in single if key in r])
        b = np.array([r[key] for r in sharded if key in r])
        np.testing.assert_allclose(b, a, rtol=1e-5)


def test_batch_not_divisible_by_devices_is_a_config_error(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    proc = subprocess.run([sys.executable, "-m", "dynamics.run", "+exp=smoke", "data.n_train=66",
                           "parallel.data=true", f"hydra.run.dir={tmp_path}"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "config error: data.n_train=66 is invalid: allowed a multiple of the 4 devices" in proc.stderr
