"""Packaging: the wheel ships conf/ and runs an experiment from outside the source tree; the console
script; the experiment list; the SLURM preset's launcher (submitit) through submitit's local executor."""

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from dynamics.run import CONF_DIR, _conf_dir, experiments

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra) -> dict:
    """The environment of a subprocess: single-threaded BLAS, no PYTHONPATH into the source tree."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", **extra)
    return env


def test_experiments_lists_each_exp_with_its_claim():
    found = experiments()
    assert set(found) == {p.stem for p in (CONF_DIR / "exp").glob("*.yaml")}
    assert found["eos"].startswith("Edge of stability (Cohen et al. 2021): under full-batch GD")
    assert found["eos"].endswith("while the loss keeps falling non-monotonically.")  # one sentence
    assert all(claim and not claim.startswith("@package") for claim in found.values())


def test_list_on_the_command_line():
    proc = subprocess.run([sys.executable, "-m", "dynamics.run", "--list"], capture_output=True,
                          text=True, timeout=120, env=_env(), check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"{len(experiments())} experiments")
    assert any(line.split()[0] == "smoke" and "Smoke test" in line for line in lines[1:])


def test_conf_dir_falls_back_to_the_packaged_copy(tmp_path, monkeypatch):
    """Without a conf/ beside src/ (an installed wheel), CONF_DIR is the package's dynamics/conf."""
    import dynamics.run as run_module

    package = tmp_path / "site-packages" / "dynamics"
    (package / "conf").mkdir(parents=True)
    (package / "conf" / "config.yaml").write_text("name: x\n")
    monkeypatch.setattr(run_module, "__file__", str(package / "run.py"))
    assert _conf_dir() == package / "conf"
    (package / "conf" / "config.yaml").unlink()
    with pytest.raises(RuntimeError, match="config directory not found"):
        _conf_dir()


def _build_and_install(tmp_path: Path) -> Path:
    """Build the wheel (no build isolation: offline) and install it, without dependencies, into a fresh
    venv that sees this environment's packages through a .pth line (but not its editable dynamics)."""
    if importlib.util.find_spec("wheel") is None:
        pytest.skip("building the wheel needs the `wheel` package (dev extra)")
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(dist), str(ROOT)], check=True, capture_output=True,
                   timeout=600, cwd=tmp_path, env=_env())
    (wheel,) = dist.glob("dynamics-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # this environment's packages (jax, hydra, ...) as a plain path: its .pth files, among them the
    # editable install's pointer to src/, are not processed from there
    Path(purelib, "_outer_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True, timeout=600, env=_env())
    return venv


@pytest.mark.slow
def test_wheel_runs_an_experiment_outside_the_source_tree(tmp_path):
    venv = _build_and_install(tmp_path)
    python, work = venv / "bin" / "python", tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run([python, "-c", "import dynamics.run as r; print(r.__file__); print(r.CONF_DIR)"],
                           check=True, capture_output=True, text=True, cwd=work, env=_env()).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), where  # the wheel, its packaged conf/
    listed = subprocess.run([venv / "bin" / "dynamics", "--list"], capture_output=True, text=True,
                            cwd=work, env=_env(), timeout=120, check=False)
    assert listed.returncode == 0 and "eos " in listed.stdout, listed.stderr
    out = work / "run"
    proc = subprocess.run([python, "-m", "dynamics.run", "+exp=eos", "claim.seeds=1", "train.steps=20",
                           f"hydra.run.dir={out}"], capture_output=True, text=True, cwd=work,
                          env=_env(), timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["name"] == "eos"
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 21  # steps 0..20


@pytest.mark.slow
def test_slurm_launcher_through_submitits_local_executor(tmp_path):
    """The SLURM preset's plugin (hydra-submitit-launcher), run by submitit's local executor: a 2-point
    multirun of +exp=smoke, each point a finished run with its summary."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "-m", "dynamics.run", "-m", "hydra/launcher=submitit_local", "+exp=smoke",
         "train.steps=10", "seed=0,1", f"hydra.sweep.dir={sweep}", "hydra.launcher.timeout_min=10",
         "hydra.launcher.cpus_per_task=1", "hydra.launcher.gpus_per_node=0"],
        capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 runs: 2 finished" in proc.stderr
    for point in ("0", "1"):
        summary = json.loads((sweep / point / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["hparams"]["seed"] == int(point)
    assert list((sweep / ".submitit").glob("*/*_result.pkl"))  # ran through submitit
