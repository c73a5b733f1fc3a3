"""TensorBoard: event files in ``<run dir>/tensorboard`` (``tensorboard --logdir <run dir>``).

Written with the ``tensorboard`` package's own event writer and protos (no TensorFlow, no PyTorch):
each metric as a scalar at its step, the config and each final summary as text (YAML / JSON), and the
figures as images.
"""

import json
import struct
import time
from pathlib import Path

import yaml
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.compat.proto.tensor_pb2 import TensorProto
from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from dynamics.loggers import Logger, flatten, numeric

DT_STRING = 7  # tensorflow's DataType enum


def _text(tag: str, text: str) -> Summary.Value:
    return Summary.Value(
        tag=tag,
        metadata=SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="text")),
        tensor=TensorProto(dtype=DT_STRING, string_val=[text.encode()],
                           tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=1)])))


def _image(tag: str, png: bytes) -> Summary.Value:
    width, height = struct.unpack(">II", png[16:24])  # the PNG header's IHDR chunk
    return Summary.Value(tag=tag, image=Summary.Image(height=height, width=width, colorspace=4,
                                                      encoded_image_string=png))


class TensorboardLogger(Logger):
    def __init__(self, root: Path, cfg, config: dict):
        self.dir = root / "tensorboard"
        self.writer = EventFileWriter(str(self.dir), flush_secs=cfg.logger.tensorboard.flush_secs)
        self.last_step = 0
        self._write([_text("config", "```\n" + yaml.safe_dump(config, sort_keys=False) + "```")], 0)

    def _write(self, values: list, step: int) -> None:
        self.writer.add_event(Event(wall_time=time.time(), step=step, summary=Summary(value=values)))

    def log_rows(self, prefix: str, rows: list[dict]) -> None:
        for row in rows:
            values = [Summary.Value(tag=prefix + k, simple_value=v) for k, v in numeric(row).items()]
            self.last_step = max(self.last_step, int(row.get("step", 0)))
            if values:
                self._write(values, int(row.get("step", 0)))

    def log_summary(self, prefix: str, summary: dict) -> None:
        scalars = {k: v for k, v in flatten(summary.get("verdict") or {}, sep="/").items()
                   if isinstance(v, (int, float))}
        values = [Summary.Value(tag=f"{prefix}verdict/{k}", simple_value=float(v))
                  for k, v in scalars.items()]
        text = "```\n" + json.dumps(summary, indent=2, sort_keys=True) + "\n```"
        self._write(values + [_text(f"{prefix}summary", text)], self.last_step)

    def finish(self, summary: dict, figures: list[Path]) -> None:
        root = self.dir.parent
        for path in figures:
            tag = "figures/" + path.relative_to(root).with_suffix("").as_posix().replace("figures/", "")
            self._write([_image(tag, path.read_bytes())], self.last_step)
        self.writer.flush()
        self.writer.close()
