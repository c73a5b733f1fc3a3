"""A claim over several seeds: each seed's verdict, and the stated aggregate rule.

Contract: a claim judged over ``claim.seeds = n`` seeds with ``seed = S`` uses the seeds S, S+1, …,
S+n−1, so ``seed=100`` is a fresh set. The rule is a pass fraction: the claim passes when at least
``ceil(min_pass_fraction · n)`` seeds pass. A seed that diverged, failed or is missing counts as a seed
that did not pass, so dropped evidence can only lower the count. Each check is also summarised over the
seeds (values, how many passed, median, mean and its standard error).
"""

import math

import numpy as np


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


def aggregate(entries: list[dict], *, min_pass_fraction: float = 0.8) -> dict:
    """The claim verdict over seeds from ``entries`` (one per seed: ``seed``, ``status``, ``verdict``,
    and ``diverged_step`` or ``error`` where they apply)."""
    if any((e.get("verdict") or {}).get("passed", False) is None and e.get("status") == "finished"
           for e in entries):
        return {"passed": None, "seeds": [e.get("seed") for e in entries]}
    n = len(entries)
    required = max(1, math.ceil(min_pass_fraction * n - 1e-9))
    outcomes = [_outcome(e) for e in entries]
    n_passed = sum(ok for ok, _ in outcomes)
    passed = n > 0 and n_passed >= required
    failed = []
    if not passed:
        failed.append(f"{n_passed}/{n} seeds passed, {required} required" if n else "no seeds")
        failed += [f"seed {e.get('seed')}: {'; '.join(reasons)}"
                   for e, (ok, reasons) in zip(entries, outcomes) if not ok]
    statuses = [e.get("status", "missing") for e in entries]
    return {
        "passed": passed,
        "failed": failed,
        "rule": f"at least {required} of {n} seeds pass (min_pass_fraction {min_pass_fraction:g})",
        "seeds": [e.get("seed") for e in entries],
        "n_passed": n_passed,
        "n_required": required,
        "statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
        "per_seed": [{"seed": e.get("seed"), "status": e.get("status", "missing"), "passed": ok,
                      **({"failed": reasons} if reasons else {})}
                     for e, (ok, reasons) in zip(entries, outcomes)],
        "per_check": per_check_summary(entries),
    }
