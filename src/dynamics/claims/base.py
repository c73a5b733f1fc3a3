"""The claim layer: typed checks, one registry, one ``judge`` for run and sweep claims.

A claim is ``claim(columns, context, **criteria) -> dict``: ``columns`` maps metric names to float
arrays over the logged rows (NaN where a row lacks the metric), ``context`` holds what the task measured
besides the rows (optimizer, hyperparameters, per-seed numbers, sweep points), and ``criteria`` are the
pass bounds (defaults in the signature, overridable as ``claim.criteria.<key>``). It returns its numbers
and the result of ``verdict(checks, numbers, missing)``:

- every ``Check`` records its ``value``, its ``bound`` (with the comparison ``op``) and its ``source``:
  ``pre-registered`` (from the paper or theory) or ``calibrated`` (from our runs, on named seeds);
- ``passed`` is false when a required input is ``missing`` (a control, a rung, a seed, a metric), when
  there are no checks, or when any check fails; ``failed`` lists the reasons in words, e.g.
  ``loss_rise_after 0.136 < 0.2``, and the command line prints them.

Several seeds of one claim are combined by ``aggregate`` (``dynamics.claims.seeds``).
"""

import inspect
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dynamics.errors import ConfigError
from dynamics.registry import Registry

PRE_REGISTERED = "pre-registered"
CALIBRATED = "calibrated"
SOURCES = (PRE_REGISTERED, CALIBRATED)

# op -> (test, the words for a failure)
_OPS: dict[str, tuple[Callable[[float, Any], bool], str]] = {
    ">=": (lambda v, b: v >= b, "<"),
    ">": (lambda v, b: v > b, "<="),
    "<=": (lambda v, b: v <= b, ">"),
    "<": (lambda v, b: v < b, ">="),
    "in": (lambda v, b: b[0] <= v <= b[1], "outside"),
    "is": (lambda v, b: bool(v) is bool(b), "is not"),
}


def _fmt(x) -> str:
    if isinstance(x, (tuple, list)):
        return "[" + ", ".join(_fmt(v) for v in x) + "]"
    if isinstance(x, bool) or x is None:
        return str(x).lower()
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return f"{float(x):.4g}"


@dataclass(frozen=True)
class Check:
    """One criterion: ``value op bound`` holds or not. A missing (None/NaN) value fails."""

    name: str
    value: float | bool | None
    op: str
    bound: Any
    source: str
    passed: bool
    note: str = ""
    # over seeds (claim.rule = mean): judge mean ± se_units · SE, on the side that makes passing harder
    se_units: float = 0.0

    def describe(self) -> str:
        """The failure in words (``loss_rise_after 0.136 < 0.2``); the check itself if it passed."""
        if self.value is None:
            return f"{self.name} missing" + (f" ({self.note})" if self.note else "")
        if self.op == "is":
            text = self.note or f"{self.name} is {_fmt(self.value)}"
            return text if self.passed else f"{self.name} is not {_fmt(self.bound)}" + (
                f" ({self.note})" if self.note else "")
        op = self.op if self.passed else _OPS[self.op][1]
        text = f"{self.name} {_fmt(self.value)} {op} {_fmt(self.bound)}"
        return text if self.passed or not self.note else f"{text} ({self.note})"

    def as_dict(self) -> dict:
        out = asdict(self)
        del out["name"]
        for key in ("note", "se_units"):
            if not out[key]:
                del out[key]
        if isinstance(out["bound"], tuple):
            out["bound"] = list(out["bound"])
        return out


def check(name: str, value, op: str, bound, source: str = PRE_REGISTERED, note: str = "",
          se_units: float = 0.0) -> Check:
    """A ``Check`` of ``value op bound`` (``op``: ``>= > <= < in is``). ``se_units``: under the mean rule
    over seeds (``claims.seeds``) the seeds' mean must hold the bound by that many standard errors."""
    if op not in _OPS:
        raise ValueError(f"unknown comparison {op!r}")
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}")
    if value is not None and not isinstance(value, bool):
        value = float(value)
        if not math.isfinite(value):
            value = None
    if isinstance(bound, list):
        bound = tuple(bound)
    passed = value is not None and bool(_OPS[op][0](value, bound))
    return Check(name, value, op, bound, source, passed, note, float(se_units))


def verdict(checks: Iterable[Check], numbers: dict | None = None,
            missing: Iterable[str] = ()) -> dict:
    """The verdict of ``checks``: ``passed``, ``failed`` (reasons in words) and the checks by name."""
    checks, missing = list(checks), list(missing)
    failed = [f"missing {m}" for m in missing] + [c.describe() for c in checks if not c.passed]
    if not checks and not missing:
        failed.append("no checks")
    return {**(numbers or {}), "passed": not failed, "failed": failed,
            "checks": {c.name: c.as_dict() for c in checks}, **({"missing": missing} if missing else {})}


def missing_verdict(what: str, numbers: dict | None = None) -> dict:
    """A verdict that fails because its evidence ``what`` is absent."""
    return verdict([], numbers, missing=[what])


def not_applicable_verdict(reason: str, numbers: dict | None = None) -> dict:
    """A verdict for a claim that cannot be judged for this setting (``reason``, e.g. "not applicable: no
    known threshold for lion"): ``passed`` is false and ``not_applicable`` holds the reason."""
    return {**(numbers or {}), "passed": False, "not_applicable": reason, "failed": [reason],
            "checks": {}}


Claim = Callable[..., dict]
CLAIMS: Registry[Claim] = Registry("claim", "claim.name")


@CLAIMS.register("none")
def no_claim(columns, context) -> dict:
    """Runs that check no claim (smoke tests, exploratory runs): ``passed`` is null."""
    del columns, context
    return {"passed": None}


def criteria_of(name: str) -> dict:
    """The criteria of claim ``name`` with their defaults."""
    params = inspect.signature(CLAIMS.get(name)).parameters
    return {p: v.default for p, v in params.items() if p not in ("columns", "context")}


def check_criteria(name: str, criteria: dict) -> None:
    """Fail with the allowed keys if ``criteria`` names a key claim ``name`` does not take."""
    allowed = list(criteria_of(name))
    for key in criteria:
        if key not in allowed:
            raise ConfigError(f"claim.criteria.{key} is not a criterion of claim {name!r}: "
                              f"allowed {', '.join(allowed) or 'none'}")


def columns_of(rows: list[dict]) -> dict[str, np.ndarray]:
    """Metric name -> float array over ``rows`` (NaN where a row lacks it or holds a non-number)."""
    keys = sorted({k for row in rows for k, v in row.items()
                   if v is None or isinstance(v, (int, float, np.number))})

    def number(v):
        return np.nan if v is None else float(v)

    return {k: np.array([number(row.get(k)) for row in rows]) for k in keys}


def judge(name: str, rows: list[dict], context: dict, criteria: dict) -> dict:
    """Run claim ``name`` on logged ``rows`` and the task's ``context``; record the criteria used."""
    check_criteria(name, criteria)
    result = CLAIMS.get(name)(columns_of(rows), context, **criteria)
    if name != "none":
        used = {**criteria_of(name), **criteria}
        result["criteria"] = {k: list(v) if isinstance(v, tuple) else v for k, v in used.items()}
    return result


def failure_line(verdict_: dict, limit: int = 3) -> str:
    """``passed=False (a; b; c; +2 more)`` for the log."""
    passed = verdict_.get("passed")
    reasons = verdict_.get("failed") or []
    if passed is not False or not reasons:
        return f"passed={passed}"
    shown = "; ".join(reasons[:limit])
    more = f"; +{len(reasons) - limit} more" if len(reasons) > limit else ""
    return f"passed=False ({shown}{more})"
