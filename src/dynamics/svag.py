r"""SVAG: Stochastic Variance Amplified Gradient (Li, Malladi, Arora 2021; Malladi et al. 2022).

SVAG amplifies the minibatch gradient noise by :math:`\ell` (SGD) or :math:`\ell^2` (RMSprop/Adam)
in covariance while leaving its mean unchanged, and shrinks the step so that the SDE is unchanged.
As :math:`\ell \to \infty` the runs converge (weakly, error :math:`O(1/\ell)`) to the SDE, which is
how the papers test SDE validity on networks. With two independent minibatches of size B,

.. math::
  g = r_1\,\nabla L(\theta; B_1) + r_2\,\nabla L(\theta; B_2), \qquad r_1 + r_2 = 1,

- SGD: :math:`r_{1,2} = (1 \pm \sqrt{2\ell - 1})/2` so :math:`r_1^2 + r_2^2 = \ell`
  (covariance :math:`\ell\Sigma_B`); step η/ℓ and ℓ× the steps (``sadhikamalladi/svag``).
- RMSprop/Adam: :math:`r_{1,2} = (1 \pm \sqrt{2\ell^2 - 1})/2` so :math:`r_1^2 + r_2^2 = \ell^2`
  (σ ↦ ℓσ); step η/ℓ, :math:`1-\beta_i \mapsto (1-\beta_i)/\ell^2`, ε ↦ εℓ (ε outside the square
  root; ε ↦ εℓ² for optax ``rmsprop`` whose ε is inside it), ℓ² × the steps
  (``abhishekpanigrahi1996/Adaptive-SDE``). This is the square-root rule with κ = 1/ℓ², done by
  amplifying the noise instead of shrinking the batch.

Time: SGD step k is at :math:`t = k\eta/\ell`; adaptive step k at :math:`t = k(\eta/\ell)^2`
(``continuous_time``), so curves for different ℓ line up.

The ladder's statistics (``squared_distance``, ``distance``, ``ladder_rate``) compare the *expected*
curves of two rungs from S paired seeds: seed i is the same init (the same unit) at every ℓ.
"""

import itertools
import math
from collections.abc import Callable

import jax
import numpy as np

from dynamics.errors import check
from dynamics.scaling import linear_scaling, sqrt_scaling

ADAPTIVE = ("adam", "adamw", "rmsprop")  # optimizers SVAG and the SDEs treat as adaptive

PyTree = object


def _check_l(l) -> float:
    try:
        value = float(l)
    except (TypeError, ValueError):
        value = math.nan
    check(math.isfinite(value) and value >= 1.0, "svag.l", l, "a finite number >= 1")
    return value


def svag_weights(l: float, *, adaptive: bool) -> tuple[float, float]:
    r"""The SVAG combination weights :math:`(r_1, r_2)`.

    .. math::
      r_{1,2} = \tfrac12\big(1 \pm \sqrt{2\ell - 1}\big) \ \text{(SGD)}, \qquad
      r_{1,2} = \tfrac12\big(1 \pm \sqrt{2\ell^2 - 1}\big) \ \text{(adaptive)},

    so that :math:`r_1 + r_2 = 1` and :math:`r_1^2 + r_2^2 = \ell` (SGD) or :math:`\ell^2`
    (adaptive).
    ℓ = 1 gives (1, 0): plain training on the first batch.

    Args:
      l: the amplification ℓ ≥ 1.
      adaptive: ``True`` for RMSprop/Adam, ``False`` for the SGD family.

    Returns:
      ``(r1, r2)`` as Python floats.
    """
    l = _check_l(l)
    c = math.sqrt(2.0 * l * l - 1.0) if adaptive else math.sqrt(2.0 * l - 1.0)
    return 0.5 * (1.0 + c), 0.5 * (1.0 - c)


def svag_gradient(grad_fn: Callable, params: PyTree, batch1, batch2, r1: float,
                  r2: float) -> PyTree:
    r"""The SVAG gradient :math:`r_1\,\nabla L(\theta; B_1) + r_2\,\nabla L(\theta; B_2)`.

    With independent batches :math:`B_1, B_2` of the same size, the mean is :math:`\nabla L` and the
    noise covariance is :math:`(r_1^2 + r_2^2)\,\Sigma_B`.

    Args:
      grad_fn: ``grad_fn(params, batch) -> grads`` (a pytree like ``params``).
      params: the parameters θ.
      batch1: the first minibatch (any pytree ``grad_fn`` accepts).
      batch2: the second, independent minibatch.
      r1: weight of the first gradient (``svag_weights``).
      r2: weight of the second gradient.

    Returns:
      The combined gradient, a pytree like ``params``.
    """
    g1 = grad_fn(params, batch1)
    g2 = grad_fn(params, batch2)
    return jax.tree.map(lambda a, b: r1 * a + r2 * b, g1, g2)


def svag_objective(loss_fn: Callable, r1: float, r2: float) -> Callable:
    r"""The SVAG loss :math:`r_1 L(\theta; B_1) + r_2 L(\theta; B_2)`, as in the official code.

    Its gradient is ``svag_gradient``; use it with ``jax.value_and_grad`` in a training step. Each
    batch gets its own forward pass (per-batch normalisation statistics, as in the papers).

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``.
      r1: weight of the first batch.
      r2: weight of the second batch.

    Returns:
      ``objective(params, batch1, batch2) -> scalar``.
    """

    def objective(params, batch1, batch2):
        return r1 * loss_fn(params, batch1) + r2 * loss_fn(params, batch2)

    return objective


def is_adaptive(optimizer_name: str) -> bool:
    """Whether SVAG/SDE treat ``optimizer_name`` as adaptive (RMSprop/Adam family).

    Args:
      optimizer_name: registry name (``gd``, ``sgd``, ``momentum``, ``nesterov``, ``adam``,
        ``adamw``, ``rmsprop``).

    Returns:
      ``True`` for ``adam``, ``adamw``, ``rmsprop``; ``False`` for every other name.
    """
    return optimizer_name in ADAPTIVE


def svag_hyperparams(optimizer_name: str, hparams: dict, l: float) -> tuple[dict, float]:
    r"""Hyperparameters and step multiplier of SVAG with amplification ℓ.

    SGD family: :math:`\eta \mapsto \eta/\ell`, ℓ× the steps (momentum unchanged).
    RMSprop/Adam: ``sqrt_scaling`` with κ = 1/ℓ² but the batch size kept:
    :math:`\eta \mapsto \eta/\ell`, :math:`1-\beta_i \mapsto (1-\beta_i)/\ell^2`, ε ↦ εℓ (ε outside
    the root, ``adam``/``adamw``) or εℓ² (optax ``rmsprop``, ε inside), decoupled weight decay
    ↦ λ/ℓ, ℓ² × the steps. Each SVAG step uses two batches of the base size.

    Args:
      optimizer_name: registry name of the optimizer.
      hparams: config-keyed hyperparameters of the base run.
      l: the amplification ℓ ≥ 1.

    Returns:
      ``(new_hparams, steps_multiplier)``; ``batch_size`` (if present) is unchanged.
    """
    l = _check_l(l)
    batch = hparams.get("batch_size")
    base = {k: v for k, v in hparams.items() if k != "batch_size"}
    if is_adaptive(optimizer_name):
        out, mult = sqrt_scaling(base, 1.0 / l**2, optimizer=optimizer_name), l**2
    else:
        out, mult = linear_scaling(base, 1.0 / l, optimizer=optimizer_name), l
    if "batch_size" in hparams:
        out["batch_size"] = batch
    return out, mult


def continuous_time(step, lr_base: float, l: float, adaptive: bool):
    r"""SDE time of SVAG step k: :math:`k\eta/\ell` (SGD) or :math:`k\eta^2/\ell^2` (adaptive).

    Args:
      step: step count k (int, or an array of them).
      lr_base: the base learning rate η (at ℓ = 1).
      l: the amplification ℓ ≥ 1.
      adaptive: ``True`` for RMSprop/Adam.

    Returns:
      The continuous time t, same shape as ``step``.
    """
    l = _check_l(l)
    per_step = (lr_base / l) ** 2 if adaptive else lr_base / l
    return step * per_step


def squared_distance(a: np.ndarray, b: np.ndarray) -> float:
    r"""Unbiased estimate of mean_t (E a_t − E b_t)² from paired seeds (row i of ``a`` and ``b``: seed i).

    With the paired differences :math:`D_i = a_i - b_i` (i.i.d. over seeds, whatever the correlation
    within a pair), :math:`E[\bar D^2] = (E D)^2 + \mathrm{Var}(D)/S`, so
    :math:`d^2 = \mathrm{mean}_t[\bar D_t^2 - s^2_{D,t}/S]`.
    """
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return float(np.mean(diff.mean(axis=0) ** 2 - diff.var(axis=0, ddof=1) / len(diff)))


def jackknife_se(statistic: Callable, stacks: list[np.ndarray]) -> float:
    """Jackknife standard error of ``statistic(*stacks)`` over seeds, leaving seed i out of every
    stack together (paired)."""
    n = len(stacks[0])
    loo = np.array([statistic(*(np.delete(s, i, 0) for s in stacks)) for i in range(n)])
    return float(np.sqrt((n - 1) / n * np.sum((loo - loo.mean()) ** 2)))


def distance(a: np.ndarray, b: np.ndarray) -> dict:
    """d = √max(d², 0), d² with its paired jackknife SE, and the uncorrected mean |Δ| of the means."""
    d2 = squared_distance(a, b)
    return {"d": float(np.sqrt(max(d2, 0.0))), "d2": d2,
            "d2_se": jackknife_se(squared_distance, [a, b]),
            "raw": float(np.mean(np.abs(np.mean(a, 0) - np.mean(b, 0))))}


def ladder_rate(stacks: list[np.ndarray], rho: float) -> dict:
    r"""The rate statistic of a ladder ℓ₁ < … < ℓ_m (``stacks``: one (seeds, points) array per rung).

    :math:`\Delta = d^2(\ell_{m-1}, \ell_m) - \rho\, d^2(\ell_1, \ell_2)` with its paired jackknife
    SE (seed i left out at every rung), ``t`` = Δ/SE, d² ± SE of every adjacent pair, and the ratio
    d²(last pair)/d²(first pair) with its paired jackknife SE (theory, weak error O(1/ℓ):
    :math:`(\ell_1/\ell_{m-1})^2`, 1/16 for ℓ = 1, 2, 4, 8).
    """
    def delta(*s):
        return squared_distance(s[-2], s[-1]) - rho * squared_distance(s[0], s[1])

    def ratio(*s):
        return squared_distance(s[-2], s[-1]) / squared_distance(s[0], s[1])

    value = delta(*stacks)
    se = jackknife_se(delta, stacks)
    pairs = [distance(a, b) for a, b in itertools.pairwise(stacks)]
    first, last = pairs[0]["d2"], pairs[-1]["d2"]
    return {"delta": value, "delta_se": se, "t": value / se if se > 0 else float("nan"),
            "ratio": last / first if first > 0 else float("nan"),
            "ratio_se": jackknife_se(ratio, stacks) if first > 0 else float("nan"),
            "pairs": pairs, "n_seeds": len(stacks[0])}
