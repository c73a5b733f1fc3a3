"""Bad input fails with one line and exit code 2, before anything is built: unknown keys (also added
with ``+``), every ``vmap.*`` value, empty sweeps, data too large for memory, a launcher without its
plugin."""

import os
import subprocess
import sys

import pytest

from dynamics.validation import estimate_memory, validate
from dynamics.errors import ConfigError
from dynamics.run import _launcher_hint

BAD = {
    "+optimizer.lrr=0.1": "config error: optimizer.lrr=0.1 is invalid: unknown key; allowed keys of "
                          "optimizer: name, lr, ",
    "vmap.b1=[1.5]": "config error: vmap.b1=[1.5] is invalid: 1.5 is not allowed; allowed a float in "
                     "[0, 1) for each value",
    "vmap.lr=[]": "config error: vmap.lr=[] is invalid: allowed a non-empty list",
    "data.n_train=100000000": "config error: data.n_train=100000000 is invalid: allowed a size that "
                              "fits in memory (needs ~",
}


FULL_DISK = """
import errno, sys
from dynamics.io import writer

def log(self, rows):
    raise OSError(errno.ENOSPC, "No space left on device", str(self.metrics_path))

writer.RunDir.log = log
sys.argv = ["dynamics.run", "+exp=smoke", "hydra.run.dir=" + sys.argv[1]]
from dynamics.run import main
main()
"""


def _cli_fails_with_one_line_and_exit_code_2(tmp_path, bad, full_disk):
    """All in parallel subprocesses (each pays for its own start-up)."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    procs = {arg: subprocess.Popen([sys.executable, "-m", "dynamics.run", "+exp=smoke", arg,
                                    f"hydra.run.dir={tmp_path / str(i)}"], cwd=tmp_path, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, arg in enumerate(bad)}
    if full_disk:
        full = subprocess.Popen([sys.executable, "-c", FULL_DISK, str(tmp_path / "full")],
                                cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    for i, (arg, proc) in enumerate(procs.items()):
        out, err = proc.communicate(timeout=300)
        lines = [line for line in (out + err).splitlines() if line.strip()]
        assert proc.returncode == 2, (arg, out, err)
        assert len(lines) == 1 and lines[0].startswith(BAD[arg]), (arg, lines)
        assert not (tmp_path / str(i) / "summary.json").exists()
    if full_disk:
        out, err = full.communicate(timeout=300)
        assert full.returncode == 1, err
        assert err.splitlines()[-1] == ("error: No space left on device: "
                                        f"{tmp_path}/full/metrics.jsonl")
        assert "Traceback" not in err


# make test: one bad input caught when the config is composed (an unknown key), one caught by
# validate (data too large), and the full disk, through the command line; the vmap.* messages are
# checked in-process below (test_every_vmap_value_is_checked_like_the_scalar_key). make test-all runs
# those two through the command line as well (each subprocess pays the start-up, ~4 s CPU).
def test_bad_input_fails_with_one_line_and_exit_code_2_and_a_full_disk_with_1(tmp_path):
    _cli_fails_with_one_line_and_exit_code_2(
        tmp_path, ["+optimizer.lrr=0.1", "data.n_train=100000000"], full_disk=True)


@pytest.mark.slow
def test_bad_vmap_values_fail_with_one_line_and_exit_code_2(tmp_path):
    _cli_fails_with_one_line_and_exit_code_2(tmp_path, ["vmap.b1=[1.5]", "vmap.lr=[]"],
                                             full_disk=False)


def test_compose_errors_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dynamics.run", "+exp=nope"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"})
    assert proc.returncode == 2 and "nope" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("override, message", [
    ("vmap.momentum=[0.5,-2.0]", "vmap.momentum=[0.5, -2.0] is invalid: -2.0 is not allowed"),
    ("vmap.lr=[0.1,0.0]", "vmap.lr=[0.1, 0.0] is invalid: 0.0 is not allowed; allowed a float > 0"),
    ("vmap.eps=[-1.0]", "vmap.eps=[-1.0] is invalid"),
    ("vmap.seed=[]", "vmap.seed=[] is invalid: allowed a non-empty list"),
    ("vmap.b1=[1.5]", BAD["vmap.b1=[1.5]"].removeprefix("config error: ")),
    ("vmap.lr=[]", BAD["vmap.lr=[]"].removeprefix("config error: ")),
])
def test_every_vmap_value_is_checked_like_the_scalar_key(compose, override, message):
    with pytest.raises(ConfigError) as err:
        validate(compose("+exp=eos", override))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_free_mappings_take_new_keys_and_the_memory_estimate_scales(compose):
    from dynamics.run import to_config  # noqa: F401  (the CLI's key check; free keys pass it)
    from dynamics.validation import check_keys

    check_keys({"claim": {"criteria": {"anything": 1}}, "optimizer": {"lr": 0.1}})
    with pytest.raises(ConfigError, match="^probes.sharpness.evry=5 is invalid: unknown key"):
        check_keys({"probes": {"sharpness": {"evry": 5}}})
    small, big = compose("+exp=eos"), compose("+exp=eos", "data.n_train=100000000")
    assert estimate_memory(small) < 2**24 and estimate_memory(big) > 2**34
    assert estimate_memory(small, points=4) == 4 * estimate_memory(small)


def test_a_launcher_without_its_plugin_says_what_to_install(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert _launcher_hint(["-m", "hydra/launcher=slurm", "+exp=eos"]) == (
        "config error: hydra/launcher=slurm needs its Hydra plugin: pip install -e '.[slurm]'")
    assert _launcher_hint(["+exp=eos"]) is None


def test_checkpoints_of_a_claim_over_vmapped_seeds_are_refused_not_ignored(compose):
    with pytest.raises(ConfigError, match=r"^checkpoint.every=50 is invalid: .*claim.seeds > 1"):
        validate(compose("+exp=eos", "checkpoint.every=50"))
    validate(compose("+exp=eos", "checkpoint.every=50", "claim.seeds=1"))
