"""One "scan k steps, keep every k-th" helper for every loop in the package (flows, SDE simulators,
discrete optimizer chains): ``scan_log`` runs a step function in one ``lax.scan`` and returns the state
(or an observation of it) at steps 0, k, 2k, …; ``scan_at`` keeps it at any increasing list of steps
(``log_spaced_steps`` for figures with a logarithmic time axis)."""

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp


def log_steps(steps: int, log_every: int) -> list[int]:
    """The steps whose state ``scan_log`` returns: 0, k, 2k, ... and ``steps`` itself."""
    out = list(range(0, steps + 1, log_every))
    if out[-1] != steps:
        out.append(steps)
    return out


def scan_log(step: Callable, carry, steps: int, log_every: int, observe: Callable | None = None):
    """Apply ``carry = step(carry)`` ``steps`` times; return the final carry and ``observe(carry)``
    (default: the carry itself) stacked along a leading axis at ``log_steps(steps, log_every)``.
    ``steps`` and ``log_every`` must be static.
    """
    observe = (lambda c: c) if observe is None else observe
    log_every = max(1, min(log_every, steps)) if steps > 0 else 1
    chunks, rem = divmod(steps, log_every)

    def inner(c, _):
        return step(c), None

    def outer(c, _):
        c, _ = jax.lax.scan(inner, c, None, length=log_every)
        return c, observe(c)

    final, logged = jax.lax.scan(outer, carry, None, length=chunks)
    parts = [jax.tree.map(lambda x: x[None], observe(carry)), logged]
    if rem:
        final, _ = jax.lax.scan(inner, final, None, length=rem)
        parts.append(jax.tree.map(lambda x: x[None], observe(final)))
    stacked = jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *parts)
    return final, stacked


def log_spaced_steps(steps: int, per_decade: int = 10) -> list[int]:
    """0, then about ``per_decade`` distinct integer steps per decade from 1 up to ``steps`` (included)."""
    if steps <= 0:
        return [0]
    decades = math.log10(steps)
    count = max(2, int(per_decade * decades) + 1)
    grid = {int(round(10 ** (i * decades / (count - 1)))) for i in range(count)}
    return [0] + sorted(v for v in grid | {steps} if 1 <= v <= steps)


def scan_at(step: Callable, carry, save_steps: list[int], observe: Callable | None = None):
    """Apply ``carry = step(carry)`` up to ``save_steps[-1]`` times; return the final carry and
    ``observe(carry)`` stacked at each of the increasing steps ``save_steps`` (static; 0 = the start).
    One ``lax.scan`` per gap between saved steps."""
    observe = (lambda c: c) if observe is None else observe
    if any(b <= a for a, b in zip(save_steps, save_steps[1:])) or save_steps[0] < 0:
        raise ValueError(f"save_steps must increase from >= 0: {save_steps}")

    def inner(c, _):
        return step(c), None

    saved, done = [], 0
    for target in save_steps:
        if target > done:
            carry, _ = jax.lax.scan(inner, carry, None, length=target - done)
            done = target
        saved.append(observe(carry))
    return carry, jax.tree.map(lambda *xs: jnp.stack(xs), *saved)
