"""Measurements during training, selected in the config under ``probes.<name>.every``."""

from dynamics.probes import evaluation, sharpness  # noqa: F401  (registers the probes)
from dynamics.probes.base import PROBES, Probe, ProbeContext

__all__ = ["PROBES", "Probe", "ProbeContext"]
