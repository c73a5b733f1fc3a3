r"""Batch sharpness: the curvature of the minibatch loss along the minibatch gradient.

Andreyev & Beneventano, "Edge of Stochastic Stability" (arXiv 2412.20553):

.. math:: \mathrm{BS}(\theta) = \mathbb E_B\!\left[\frac{g_B^\top H_B\, g_B}{\|g_B\|^2}\right],\qquad
          g_B = \nabla L_B(\theta),\; H_B = \nabla^2 L_B(\theta),

with :math:`B` a fresh minibatch of the *training* batch size, drawn like the trainer draws its batches
(distinct examples within a batch by default). Under small-batch SGD with step :math:`\eta`, BS rises to
:math:`2/\eta` and hovers there while :math:`\lambda_{\max}` of the full-batch Hessian stays below
(the paper's claim; a full batch gives :math:`\mathrm{BS} = g^\top Hg/\|g\|^2 \le \lambda_{\max}`).

The estimator is a Monte-Carlo mean over ``num_batches`` independent batches of the per-batch ratio
(one gradient and one Hessian-vector product on ``batch_size`` examples each), with the standard error
``std(ratios, ddof=1)/√num_batches`` of that mean; the batches are drawn from ``key``, so it is
reproducible (the paper's code uses a time-seeded RNG). Also returned: the "expectation inside" ratio
:math:`\mathbb E[g_B^\top H_B g_B]/\mathbb E\|g_B\|^2` (a ratio of means, biased; no standard error).

Momentum (arXiv 2604.14108): with a velocity :math:`m` and momentum :math:`\beta`, pass ``velocity`` and
``momentum`` to measure along the next step direction :math:`s = \beta m + g_B` instead:
:math:`\mathbb E_B[s^\top H_B s / s^\top g_B]` (the paper's ``--momentum-bs``); for heavy ball the small-batch
plateau is :math:`2(1-\beta)/\eta` and the large-batch one :math:`2(1+\beta)/\eta` on plain BS.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

PyTree = object
SAMPLINGS = ("without_replacement", "with_replacement")


class BatchSharpness(NamedTuple):
    """A batch-sharpness estimate (a pytree).

    Attributes:
      estimate: mean over batches of the per-batch ratio :math:`g_B^\\top H_B g_B/\\|g_B\\|^2`.
      stderr: its standard error, ``std(values, ddof=1)/sqrt(num_batches)``.
      ratio_of_means: :math:`\\sum_B g_B^\\top H_B g_B / \\sum_B \\|g_B\\|^2` ("expectation inside").
      grad_norm_sq: mean :math:`\\|g_B\\|^2` over the batches.
      values: ``(num_batches,)`` per-batch ratios.
      num_matvecs: Hessian-vector products spent (one per batch, plus as many gradients).
    """

    estimate: jax.Array
    stderr: jax.Array
    ratio_of_means: jax.Array
    grad_norm_sq: jax.Array
    values: jax.Array
    num_matvecs: jax.Array


def batch_indices(key: jax.Array, n: int, batch_size: int, num_batches: int,
                  sampling: str = "without_replacement") -> jax.Array:
    """``(num_batches, batch_size)`` example indices, batch ``i`` drawn from ``fold_in(key, i)``.

    ``"without_replacement"``: distinct examples within each batch (``jax.random.choice``), as the
    trainer's default sampler; ``"with_replacement"``: i.i.d. uniform draws. Batches are independent of
    each other in both cases.
    """
    if sampling not in SAMPLINGS:
        raise ValueError(f"unknown sampling {sampling!r}; valid: {', '.join(SAMPLINGS)}.")
    if sampling == "without_replacement" and batch_size > n:
        raise ValueError(f"batch_size={batch_size} > n={n} without replacement.")

    def draw(i):
        k = jax.random.fold_in(key, i)
        if sampling == "without_replacement":
            return jax.random.choice(k, n, (batch_size,), replace=False)
        return jax.random.randint(k, (batch_size,), 0, n)

    return jax.vmap(draw)(jnp.arange(num_batches))


def _vdot(a: PyTree, b: PyTree) -> jax.Array:
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def batch_sharpness(loss_fn: Callable[[PyTree, PyTree], jax.Array], params: PyTree, data: PyTree, *,
                    key: jax.Array, batch_size: int, num_batches: int = 64,
                    sampling: str = "without_replacement", chunk: int | None = None,
                    velocity: PyTree | None = None, momentum: float | jax.Array = 0.0
                    ) -> BatchSharpness:
    r"""Monte-Carlo batch sharpness :math:`\mathbb E_B[g_B^\top H_B g_B/\|g_B\|^2]` with its standard error.

    Call it inside ``jax.jit`` with ``params`` and ``data`` as jit arguments; ``batch_size``,
    ``num_batches``, ``sampling`` and ``chunk`` are static.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``, the mean loss on a batch; ``batch`` is ``data``
        indexed along its leading axis (e.g. ``(x, y)``).
      params: the point :math:`\theta`.
      data: a pytree of arrays sharing a leading axis of ``n`` examples (the training set).
      key: PRNG key of the batch draws (seed it from the step for a reproducible probe).
      batch_size: examples per batch (the training batch size).
      num_batches: batches averaged (the paper's code: 10–1000, stopping at a relative standard error
        of 0.005; 64 gives a few per cent).
      sampling: ``"without_replacement"`` (default; as ``train.sampling``) or ``"with_replacement"``.
      chunk: batches processed together (``jax.lax.map`` ``batch_size``; ``None``: all at once).
      velocity: optional momentum buffer :math:`m` (pytree like ``params``): measure along
        :math:`s = \beta m + g_B` as :math:`s^\top H_B s/s^\top g_B` (module docstring).
      momentum: :math:`\beta` for ``velocity``.

    Returns:
      ``BatchSharpness(estimate, stderr, ratio_of_means, grad_norm_sq, values, num_matvecs)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> x = jnp.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [2.0, 0.0]])
      >>> loss = lambda w, b: 0.5 * jnp.mean((b @ w - 1.0) ** 2)
      >>> bs = batch_sharpness(loss, jnp.zeros(2), x, key=jax.random.key(0), batch_size=4,
      ...                      num_batches=2)
      >>> float(bs.stderr)  # the full batch every time: no spread
      0.0
    """
    n = jax.tree.leaves(data)[0].shape[0]
    idx = batch_indices(key, n, batch_size, num_batches, sampling)

    def one(ix):
        batch = jax.tree.map(lambda a: a[ix], data)
        g, hvp_fn = jax.linearize(jax.grad(lambda p: loss_fn(p, batch)), params)
        if velocity is None:
            s = g
        else:
            s = jax.tree.map(lambda m, gi: momentum * m + gi, velocity, g)
        num = _vdot(s, hvp_fn(s))
        den = _vdot(s, g)
        return num, den, _vdot(g, g)

    num, den, gsq = jax.lax.map(one, idx, batch_size=chunk)
    tiny = jnp.finfo(num.dtype).tiny
    values = num / jnp.where(den == 0, tiny, den)
    est = jnp.mean(values)
    se = jnp.std(values, ddof=1) / jnp.sqrt(num_batches) if num_batches > 1 else jnp.full_like(
        est, jnp.nan)
    rom = jnp.sum(num) / jnp.sum(den)
    return BatchSharpness(est, se, rom, jnp.mean(gsq), values, jnp.asarray(num_batches))
