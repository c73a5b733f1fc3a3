"""Verdicts: an experiment's claim checked against its own run.

A verdict is ``verdict(columns, context, **criteria) -> dict`` where ``columns`` maps metric names to
float arrays over the logged rows (NaN where a row lacks the metric), ``context`` holds the optimizer
name and hyperparameters, and ``criteria`` are the pass thresholds (defaults in the function signature,
overridable as ``verdict.criteria.<key>`` in the config). The result holds the claim's numbers and
``passed``, computed from them.
"""

import inspect
from collections.abc import Callable

import numpy as np

from dynamics.errors import ConfigError
from dynamics.registry import Registry

Verdict = Callable[..., dict]
VERDICTS: Registry[Verdict] = Registry("verdict", "verdict.name")


@VERDICTS.register("none")
def no_claim(columns, context) -> dict:
    """Runs that check no claim (smoke tests, exploratory runs): ``passed`` is null."""
    del columns, context
    return {"passed": None}


def check_criteria(name: str, criteria: dict) -> None:
    """Fail with the allowed keys if ``criteria`` names a key verdict ``name`` does not take."""
    params = inspect.signature(VERDICTS.get(name)).parameters
    allowed = [p for p in params if p not in ("columns", "context")]
    for key in criteria:
        if key not in allowed:
            raise ConfigError(f"verdict.criteria.{key} is not a criterion of verdict {name!r}: "
                              f"allowed {', '.join(allowed) or 'none'}")


def judge(name: str, rows: list[dict], context: dict, criteria: dict) -> dict:
    """Run verdict ``name`` on logged ``rows``."""
    check_criteria(name, criteria)
    keys = sorted({k for row in rows for k in row})
    columns = {k: np.array([np.nan if row.get(k) is None else float(row[k]) for row in rows])
               for k in keys}
    return VERDICTS.get(name)(columns, context, **criteria)
