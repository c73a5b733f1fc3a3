"""Each experiment's claim, checked from its own metrics: ``judge(name, rows, context, criteria)``."""

from dynamics.verdicts import eos, sharpness_reduction  # noqa: F401  (registers the verdicts)
from dynamics.verdicts import ntk  # noqa: F401,E402  (registers the NTK verdicts)
from dynamics.verdicts import implicit_bias  # noqa: F401,E402
from dynamics.verdicts import sde  # noqa: F401,E402  (registers the SDE verdicts)
from dynamics.verdicts.base import VERDICTS, check_criteria, judge
from dynamics.verdicts.eos import stability_threshold

__all__ = ["VERDICTS", "check_criteria", "judge", "stability_threshold"]
