"""One "scan k steps, keep every k-th" helper for every loop in the package (flows, SDE simulators,
discrete optimizer chains): ``scan_log`` runs a step function in one ``lax.scan`` and returns the state
(or an observation of it) at steps 0, k, 2k, …"""

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
