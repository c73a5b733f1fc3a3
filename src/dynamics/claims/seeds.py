"""A claim over several seeds: each seed's verdict, and the stated aggregate rule.

Contract: a claim judged over ``claim.seeds = n`` seeds with ``seed = S`` uses the seeds S, S+1, …,
S+n−1, so ``seed=100`` is a fresh set. Two rules (``claim.rule``):

- ``pass_fraction`` (default): the claim passes when at least ``ceil(min_pass_fraction · n)`` seeds
  pass. A seed that diverged, failed or is missing counts as a seed that did not pass, so dropped
  evidence can only lower the count.
- ``mean``: a claim about the expected value over seeds. Every check is judged once, on the mean of its
  per-seed values over the *complete* seeds (finished, with no missing evidence), held by the check's
  ``se_units`` standard errors on the side that makes passing harder (mean + u·SE ≤ bound for ``<=``).
  A seed that diverged, failed, is missing or lacks evidence is *dropped*; more than
  ``n − ceil(min_pass_fraction · n)`` dropped seeds, fewer than two complete ones, a check missing on a
  complete seed, a non-numeric check or no checks fail the claim.

Each check is also summarised over the seeds (values, how many passed, median, mean and its standard
error).
"""

import math

import numpy as np

from dynamics.claims.base import check as make_check


def seed_list(seed: int, count: int) -> list[int]:
    """The claim's seeds under the contract: ``seed, seed + 1, …, seed + count − 1``."""
    return [int(seed) + i for i in range(int(count))]


def _outcome(entry: dict) -> tuple[bool, list[str]]:
    status = entry.get("status", "missing")
    verdict = entry.get("verdict") or {}
    if status == "diverged":
        return False, [f"diverged at step {entry.get('diverged_step')}"]
    if status != "finished":
        return False, [f"{status}" + (f": {entry['error']}" if entry.get("error") else "")]
    if verdict.get("passed") is not True:
        return False, list(verdict.get("failed") or ["passed is not true"])
    return True, []


def _stats(values: list) -> dict:
    finite = np.array([float(v) for v in values if isinstance(v, (int, float)) and
                       not isinstance(v, bool) and math.isfinite(float(v))])
    if finite.size == 0:
        return {}
    se = float(np.std(finite, ddof=1) / np.sqrt(finite.size)) if finite.size > 1 else None
    return {"median": float(np.median(finite)), "mean": float(np.mean(finite)), "se": se}


def per_check_summary(entries: list[dict]) -> dict:
    """Check name -> its values over the seeds, how many seeds passed it, median, mean, SE."""
    names: list[str] = []
    for entry in entries:
        for name in ((entry.get("verdict") or {}).get("checks") or {}):
            if name not in names:
                names.append(name)
    summary = {}
    for name in names:
        checks = [((e.get("verdict") or {}).get("checks") or {}).get(name) for e in entries]
        values = [c["value"] if c else None for c in checks]
        first = next(c for c in checks if c)
        summary[name] = {"values": values, "n_passed": sum(bool(c and c["passed"]) for c in checks),
                         "op": first["op"], "bound": first["bound"], "source": first["source"],
                         **_stats(values)}
    return summary


def aggregate(entries: list[dict], *, min_pass_fraction: float = 0.8, rule: str = "pass_fraction") -> dict:
    """The claim verdict over seeds from ``entries`` (one per seed: ``seed``, ``status``, ``verdict``,
    and ``diverged_step`` or ``error`` where they apply), by ``rule`` (a key of ``RULES``)."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}: allowed {' | '.join(RULES)}")
    if any((e.get("verdict") or {}).get("passed", False) is None and e.get("status") == "finished"
           for e in entries):
        return {"passed": None, "seeds": [e.get("seed") for e in entries]}
    return RULES[rule](entries, min_pass_fraction)


def _required(n: int, min_pass_fraction: float) -> int:
    """Seeds that must pass (or, under the mean rule, be complete): ``ceil(min_pass_fraction · n)``, ≥ 1."""
    return max(1, math.ceil(min_pass_fraction * n - 1e-9))


def _record(entries: list[dict], outcomes: list[tuple[bool, list[str]]], dropped: dict | None = None) -> dict:
    """What every rule reports besides its verdict: the seeds, each seed's own outcome (and why it was
    dropped), the statuses and each check over the seeds."""
    dropped = dropped or {}
    statuses = [e.get("status", "missing") for e in entries]
    return {
        "seeds": [e.get("seed") for e in entries],
        "n_passed": sum(ok for ok, _ in outcomes),
        "statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
        "per_seed": [{"seed": e.get("seed"), "status": e.get("status", "missing"), "passed": ok,
                      **({"failed": reasons} if reasons else {}),
                      **({"dropped": dropped[e.get("seed")]} if e.get("seed") in dropped else {})}
                     for e, (ok, reasons) in zip(entries, outcomes)],
        "per_check": per_check_summary(entries),
    }


def _pass_fraction_rule(entries: list[dict], min_pass_fraction: float) -> dict:
    n = len(entries)
    required = _required(n, min_pass_fraction)
    outcomes = [_outcome(e) for e in entries]
    n_passed = sum(ok for ok, _ in outcomes)
    passed = n > 0 and n_passed >= required
    failed = []
    if not passed:
        failed.append(f"{n_passed}/{n} seeds passed, {required} required" if n else "no seeds")
        failed += [f"seed {e.get('seed')}: {'; '.join(reasons)}"
                   for e, (ok, reasons) in zip(entries, outcomes) if not ok]
    return {"passed": passed, "failed": failed,
            "rule": f"at least {required} of {n} seeds pass (min_pass_fraction {min_pass_fraction:g})",
            "n_required": required, **_record(entries, outcomes)}


def _dropped(entry: dict) -> str | None:
    """Why a seed gives no complete evidence (None: it does)."""
    verdict = entry.get("verdict") or {}
    if entry.get("status", "missing") != "finished":
        return _outcome(entry)[1][0]
    if verdict.get("missing"):
        return "; ".join(f"missing {m}" for m in verdict["missing"])
    if not verdict.get("checks"):
        return "; ".join(verdict.get("failed") or ["no checks"])
    return None


def _mean_check(name: str, entries: list[dict]):
    """The check ``name`` judged on the mean of its values over ``entries`` (complete seeds)."""
    checks = [e["verdict"]["checks"].get(name) for e in entries]
    first = next(c for c in checks if c)
    values = [c.get("value") if c else None for c in checks]
    lacking = [e.get("seed") for e, v in zip(entries, values) if not isinstance(v, (int, float)) or
               isinstance(v, bool) or not math.isfinite(float(v))]
    units = float(first.get("se_units", 0.0))
    if lacking:
        what = "not numeric" if first["op"] == "is" else f"missing on seeds {lacking}"
        return make_check(name, None, first["op"], first["bound"], first["source"], note=what), None, None
    x = np.asarray(values, float)
    mean, se = float(x.mean()), float(x.std(ddof=1) / np.sqrt(x.size))
    shift = {"<=": 1, "<": 1, ">=": -1, ">": -1}.get(first["op"], 0) * units * se
    note = f"mean of {x.size} seeds {mean:.4g} ± SE {se:.3g}" + (f", judged at mean {'+' if shift > 0 else '−'} "
                                                              f"{units:g}·SE" if shift else "")
    return (make_check(name, mean + shift, first["op"], first["bound"], first["source"], note=note, se_units=units),
            mean, se)


def _mean_rule(entries: list[dict], min_pass_fraction: float) -> dict:
    n = len(entries)
    allowed = n - _required(n, min_pass_fraction) if n else 0
    dropped = {e.get("seed"): why for e in entries if (why := _dropped(e)) is not None}
    complete = [e for e in entries if e.get("seed") not in dropped]
    names: list[str] = []
    for e in complete:
        names += [k for k in e["verdict"]["checks"] if k not in names]
    judged = [_mean_check(name, complete) for name in names] if len(complete) >= 2 else []
    failed = []
    if len(dropped) > allowed:
        failed.append(f"{len(dropped)}/{n} seeds dropped, at most {allowed} allowed")
    if len(complete) < 2:
        failed.append(f"{len(complete)} complete seeds, 2 required for a mean and its SE")
    elif not judged:
        failed.append("no checks")
    failed += [c.describe() for c, _, _ in judged if not c.passed]
    failed += [f"seed {s}: {why}" for s, why in dropped.items()] if failed else []
    return {
        "passed": not failed,
        "failed": failed,
        "rule": f"every check's mean over the complete seeds meets its bound (held by se_units·SE where "
                f"stated); at most {allowed} of {n} seeds dropped (min_pass_fraction {min_pass_fraction:g})",
        "complete_seeds": [e.get("seed") for e in complete],
        "dropped": dropped,
        "checks": {c.name: {**c.as_dict(), "mean": mean, "se": se} for c, mean, se in judged},
        **_record(entries, [_outcome(e) for e in entries], dropped),
    }


RULES = {"pass_fraction": _pass_fraction_rule, "mean": _mean_rule}
