"""Training: pure jitted steps over pytrees, scanned in chunks, with probes at chunk boundaries."""

from dynamics.train.loop import TrainOutcome, train
from dynamics.train.state import STREAMS, TrainState, rng_streams
from dynamics.train.step import evaluate, make_chunk, make_objective, make_step

__all__ = ["STREAMS", "TrainOutcome", "TrainState", "evaluate", "make_chunk", "make_objective",
           "make_step", "rng_streams", "train"]
