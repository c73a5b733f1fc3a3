r"""Batch sharpness of minibatch SGD (Andreyev & Beneventano, "Edge of Stochastic Stability",
arXiv 2412.20553): the expected curvature of the minibatch loss along its own minibatch gradient,

.. math:: \mathrm{BS}(\theta) = \mathbb E_B\!\left[g_B^\top H_B\, g_B / \|g_B\|^2\right],

estimated at the iterate by ``dynamics.curvature.batch_sharpness`` as the mean over ``num_batches``
independent batches of ``batch_size`` examples (default: the training batch size, drawn like the
trainer draws its batches, ``train.sampling``), with the standard error of that mean. The batch draws
come from the probe's key stream (folded with the step), so a measurement is reproducible.

Logged: ``batch_sharpness``, ``batch_sharpness_se`` (standard error) and
``batch_sharpness_ratio_of_means`` (:math:`\mathbb E[g_B^\top H_B g_B]/\mathbb E\|g_B\|^2`). With a full
batch (``batch_size`` = the training set) every batch is the same: one batch is measured and the standard
error is 0; BS is then the Rayleigh quotient of the full Hessian along the full gradient (≤ λ_max).
"""

import jax.numpy as jnp

from dynamics.curvature.batch_sharpness import batch_sharpness as estimate_batch_sharpness
from dynamics.errors import check
from dynamics.probes.base import PROBES, Probe, ProbeContext


@PROBES.register("batch_sharpness")
def batch_sharpness(ctx: ProbeContext, params, key, *, every: int, num_batches: int = 64,
                    batch_size: int | None = None, chunk: int | None = None, **_) -> Probe:
    """``batch_sharpness`` ± ``batch_sharpness_se`` over ``num_batches`` batches of ``batch_size``
    examples (``None``: the training batch size; full batch when training is full batch)."""
    del params, key
    n = ctx.dataset.n_train
    b = batch_size if batch_size is not None else (ctx.batch_size or n)
    check(0 < b <= n, "probes.batch_sharpness.batch_size", batch_size,
          f"null (the training batch size) or 1..{n} (data.n_train)")
    check(num_batches > 1, "probes.batch_sharpness.num_batches", num_batches,
          "an integer > 1 (the standard error needs two batches)")
    full = b == n and ctx.sampling == "without_replacement"  # every batch is the training set
    m = 1 if full else num_batches

    def loss_fn(p, batch):
        return ctx.loss(ctx.apply_fn(p, batch[0]), batch[1])

    def fn(state, probe_state, key, x, y):
        est = estimate_batch_sharpness(loss_fn, state.params, (x, y), key=key, batch_size=b,
                                       num_batches=m, sampling=ctx.sampling, chunk=chunk)
        se = jnp.zeros_like(est.estimate) if full else est.stderr
        return {"batch_sharpness": est.estimate, "batch_sharpness_se": se,
                "batch_sharpness_ratio_of_means": est.ratio_of_means}, probe_state

    return Probe("batch_sharpness", every, None, fn,
                 (ctx.dataset.x_train, ctx.dataset.y_train))
