"""Measurements during training, selected in the config under ``probes.<name>.every``."""

from dynamics.probes import batch_sharpness, evaluation, sharpness  # noqa: F401  (registers)
from dynamics.probes.base import PROBES, Probe, ProbeContext

__all__ = ["PROBES", "Probe", "ProbeContext"]
