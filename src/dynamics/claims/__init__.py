"""Claims: each experiment's claim checked from its own evidence, over several seeds.

- ``base``: ``Check`` (value, bound, source: pre-registered | calibrated), ``verdict`` (fails on missing
  evidence and on empty checks, lists the failures in words), the ``CLAIMS`` registry and ``judge``;
- ``seeds``: the seed contract (``seed=S`` → seeds S, S+1, …) and the pass-fraction rule over seeds;
- one module per family registers its claims: ``eos``, ``eos_sgd``, ``sharpness_reduction``,
  ``implicit_bias``, ``ntk``, ``sde``.
"""

from dynamics.claims import (central_flow, eos, eos_sgd, implicit_bias, ntk,  # noqa: F401 (register)
                             sde, sharpness_reduction)
from dynamics.claims.base import (CALIBRATED, CLAIMS, PRE_REGISTERED, Check, check, check_criteria,
                                  columns_of, criteria_of, failure_line, judge,
                                  missing_verdict, verdict)
from dynamics.claims.eos import THRESHOLDS, stability_threshold
from dynamics.claims.seeds import aggregate, seed_list

__all__ = ["CALIBRATED", "CLAIMS", "PRE_REGISTERED", "THRESHOLDS", "Check", "aggregate", "check",
           "check_criteria", "columns_of", "criteria_of", "failure_line", "judge",
           "missing_verdict", "seed_list", "stability_threshold", "verdict"]
