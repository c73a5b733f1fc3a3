"""Each experiment's claim, checked from its own metrics: ``judge(name, rows, context, criteria)``."""

from dynamics.verdicts import eos, sharpness_reduction  # noqa: F401  (registers the verdicts)
from dynamics.verdicts.base import VERDICTS, check_criteria, judge
from dynamics.verdicts.eos import stability_threshold

__all__ = ["VERDICTS", "check_criteria", "judge", "stability_threshold"]
