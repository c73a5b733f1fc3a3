"""Loggers (logger.names): each writes its files into the run directory, and what it logged, read back
with its own library's reader, equals metrics.jsonl and summary.json. The packages are not installed
here: a logger whose package is absent is skipped (the `dev` extra installs them all)."""

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from dynamics.config import Config
from dynamics.config_logger import LoggerConfig
from dynamics.errors import ConfigError
from dynamics.io import RunDir
from dynamics.loggers import attached, check_loggers

ROWS = [{"step": 0, "loss": 1.25, "sharpness": 3.5, "time": 0.0},
        {"step": 1, "loss": 0.875, "time": 0.1},
        {"step": 2, "loss": float("nan"), "time": 0.2}]  # NaN: null in metrics.jsonl, not logged
SEED_ROWS = [{"step": 0, "loss": 2.0}, {"step": 1, "loss": 1.5}]
VERDICT = {"passed": True, "reached_threshold": 1.0, "checks": {"hover": {"value": 0.25}}}


def _png(path: Path) -> None:
    """A 3x2 PNG written without matplotlib (a real figure's stand-in)."""
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes([200, 0, 0] * 3) for _ in range(2))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 3, 2, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _fake_run(tmp_path: Path, names: list[str]) -> Path:
    """What a run writes, through RunDir, with the loggers attached as dynamics.run attaches them: a
    running summary, rows, a seed's rows in seeds/1, a figure, the final summary with a verdict."""
    cfg = Config(name="logtest", logger=LoggerConfig(names=names))
    root = tmp_path / "run"
    with attached(cfg, root):
        run = RunDir(root)
        run.write_summary({"status": "running"}, final=False)
        run.log(ROWS[:2])
        run.log(ROWS[2:])
        seed = RunDir(root / "seeds" / "1")
        seed.log(SEED_ROWS)
        seed.write_summary({"status": "finished", "verdict": {"passed": False}})
        _png(root / "figures" / "loss.png")
        run.write_summary({"status": "finished", "verdict": VERDICT})
    return root


def _jsonl(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "metrics.jsonl").read_text().splitlines()]


def _expected(root: Path, key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in _jsonl(root) if r.get(key) is not None]


def _same(got: list[tuple[int, float]], want: list[tuple[int, float]], rel: float = 0.0) -> bool:
    """Same steps, and values equal (within ``rel``: TensorBoard stores float32)."""
    return ([s for s, _ in got] == [s for s, _ in want]
            and [v for _, v in got] == pytest.approx([v for _, v in want], rel=rel, abs=0))


def test_unknown_or_missing_logger_fails_at_validation(monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match="unknown logger 'neptune'; choose from wandb"):
        check_loggers(LoggerConfig(names=["neptune"]))
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match=r"^logger.names: mlflow needs its package: "
                                          r"pip install 'dynamics\[mlflow\]'$"):
        check_loggers(LoggerConfig(names=["mlflow"]))
    from dynamics.run import run

    out = tmp_path / "never"
    with pytest.raises(ConfigError, match="dynamics\\[mlflow\\]"):
        run(Config(logger=LoggerConfig(names=["mlflow"])), out)
    assert not out.exists()  # refused before the run directory was made


def test_no_logger_is_the_default(compose):
    assert compose().logger.names == []
    assert compose("logger.names=[tensorboard,mlflow]").logger.names == ["tensorboard", "mlflow"]


def test_tensorboard_writes_event_files(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root = _fake_run(tmp_path, ["tensorboard"])
    assert list((root / "tensorboard").glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(root / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    for key in ("loss", "sharpness", "time"):
        got = [(e.step, e.value) for e in acc.Scalars(key)]
        assert _same(got, _expected(root, key), rel=1e-6), key
    assert [(e.step, e.value) for e in acc.Scalars("seeds/1/loss")] == [(0, 2.0), (1, 1.5)]
    assert acc.Scalars("verdict/passed")[-1].value == 1.0
    assert acc.Scalars("verdict/checks/hover/value")[-1].value == 0.25
    tags = acc.Tags()
    assert "figures/loss" in tags["images"]
    assert {"config", "summary", "seeds/1/summary"} <= set(tags["tensors"])  # text summaries
    config_text = acc.Tensors("config")[0].tensor_proto.string_val[0].decode()
    assert "name: logtest" in config_text


def test_mlflow_writes_a_local_file_store(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    root = _fake_run(tmp_path, ["mlflow"])
    client = MlflowClient(tracking_uri=(root / "mlruns").as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("dynamics").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "logtest"
    assert run.data.tags["status"] == "finished"
    assert run.data.params["name"] == "logtest" and run.data.params["optimizer.lr"] == "0.1"
    for key in ("loss", "sharpness", "time"):
        got = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
        assert _same(sorted(got), _expected(root, key)), key
    seed = client.get_metric_history(run.info.run_id, "seeds/1/loss")
    assert sorted((m.step, m.value) for m in seed) == [(0, 2.0), (1, 1.5)]
    assert run.data.metrics["verdict.passed"] == 1.0
    assert run.data.metrics["verdict.checks.hover.value"] == 0.25
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"summary.json", "figures", "seeds"} <= artifacts
    summary = json.loads(Path(client.download_artifacts(run.info.run_id, "summary.json",
                                                        str(tmp_path))).read_text())
    assert summary == json.loads((root / "summary.json").read_text())
    figures = [a.path for a in client.list_artifacts(run.info.run_id, "figures")]
    assert figures == ["figures/loss.png"]


def _wandb_records(path: Path):
    """The records of an offline run's .wandb file (LevelDB log format, wandb's protobuf records)."""
    from wandb.proto import wandb_internal_pb2

    data, block, pos, pending = path.read_bytes(), 32768, 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if left < 7 or (kind == 0 and length == 0):  # block padding
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk  # full / first, middle / last
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def test_wandb_offline_writes_its_run(tmp_path):
    wandb = pytest.importorskip("wandb")
    root = _fake_run(tmp_path, ["wandb"])
    wandb.teardown()  # wandb's service writes the .wandb file; wait for it (at exit wandb does this)
    (run_dir,) = (root / "wandb").glob("offline-run-*")
    (wandb_file,) = run_dir.glob("run-*.wandb")
    history, summary, config = [], {}, {}

    def items(entries):  # an item's key is ``key`` or the path ``nested_key``
        return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in entries}

    for record in _wandb_records(wandb_file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append(items(record.history.item))
        elif kind == "summary":
            summary.update(items(record.summary.update))
        elif kind == "run":
            config.update(items(record.run.config.update))
    for key in ("loss", "sharpness", "time"):
        got = [(h["step"], h[key]) for h in history if key in h and "step" in h]
        assert _same(got, _expected(root, key)), key
    seed = [(h["seeds/1/step"], h["seeds/1/loss"]) for h in history if "seeds/1/loss" in h]
    assert seed == [(0, 2.0), (1, 1.5)]
    assert config["name"] == "logtest" and config["optimizer"]["lr"] == 0.1
    assert summary["verdict.passed"] is True and summary["verdict.checks.hover.value"] == 0.25
    assert summary["status"] == "finished" and summary["seeds/1/verdict.passed"] is False
    assert list((run_dir / "files" / "media" / "images" / "figures").glob("loss_*.png"))


@pytest.mark.slow
def test_cli_run_with_every_installed_logger(tmp_path):
    """The command line with every installed logger: a smoke run writes each one's files."""
    import subprocess
    import sys

    names = [n for n, module in (("wandb", "wandb"), ("tensorboard", "tensorboard"), ("mlflow", "mlflow"))
             if __import__("importlib.util").util.find_spec(module) is not None]
    if not names:
        pytest.skip("no logger installed")
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "dynamics.run", "+exp=smoke", "train.steps=10",
                           f"logger.names=[{','.join(names)}]", f"hydra.run.dir={out}"],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((out / "summary.json").read_text())["status"] == "finished"
    dirs = {"wandb": "wandb", "tensorboard": "tensorboard", "mlflow": "mlruns"}
    for name in names:
        assert any((out / dirs[name]).rglob("*")), name
    assert np.isfinite([r["loss"] for r in _jsonl(out)]).all()
