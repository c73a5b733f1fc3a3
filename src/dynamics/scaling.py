r"""Batch-size scaling rules: the linear rule (SGD) and the square-root rule (RMSprop, Adam).

A rule maps the hyperparameters tuned at batch size :math:`B` to those for batch size
:math:`\kappa B` so that the SDE of the optimizer, and hence the training curve *against epochs*, is
unchanged (the number of steps becomes ``steps / kappa``; that part is the caller's).

Linear scaling rule (Goyal et al. 2017; SDE justification Li, Malladi, Arora 2021), SGD family:

.. math::
  \eta \mapsto \kappa \eta, \qquad \text{momentum, decoupled weight decay unchanged.}

It keeps :math:`\eta\,\Sigma_B` (the SGD SDE's diffusion) invariant because
:math:`\Sigma_{\kappa B} = \Sigma_B / \kappa`.

Square-root scaling rule (Malladi, Lyu, Panigrahi, Arora, NeurIPS 2022), RMSprop and Adam:

.. math::
  \eta \mapsto \sqrt\kappa\,\eta, \quad 1-\beta_i \mapsto \kappa (1-\beta_i), \quad
  \epsilon \mapsto \epsilon/\sqrt\kappa \;(\text{outside } \sqrt{\cdot}), \quad
  \epsilon \mapsto \epsilon/\kappa \;(\text{inside } \sqrt{\cdot}), \quad
  \lambda \mapsto \sqrt\kappa\,\lambda \;(\text{decoupled weight decay}).

It keeps the paper's SDE constants :math:`\sigma_0 = \sigma\eta`, :math:`\epsilon_0 = \epsilon\eta`,
:math:`c_i = (1-\beta_i)/\eta^2` invariant with :math:`\sigma \mapsto \sigma/\sqrt\kappa` and time
:math:`t = k\eta^2`. optax ``rmsprop`` (the registry's ``rmsprop``) puts ε inside the square root
(:math:`\theta \leftarrow \theta - \eta g/\sqrt{\nu + \epsilon}`), where ε has the units of ν ∝ 1/B,
hence ε/κ. optax ``adamw`` decays by :math:`\eta\lambda\theta` per step, i.e.
:math:`\lambda/\eta` per unit of SDE time, hence λ·√κ (derived; the paper does not treat decoupled
weight decay).

A scaled β must stay in [0, 1): with β1 = 0.9 one cannot scale *up* by more than κ = 10; tune at the
largest batch and scale down instead. Both rules multiply ``batch_size`` by κ when present. The rule
``"none"`` changes only ``batch_size`` (the unscaled control).
"""

import math
from collections.abc import Callable

from dynamics.errors import ConfigError, check
from dynamics.registry import Registry

ScalingRule = Callable[..., dict]

SCALING_RULES: Registry[ScalingRule] = Registry("scaling rule", "scaling.rule")

_SGD = ("sgd", "gd", "momentum", "nesterov")
_ADAM = ("adam", "adamw")
_RMSPROP = ("rmsprop",)
_KNOWN = _SGD + _ADAM + _RMSPROP


def _family(optimizer: str) -> str:
    if optimizer not in _KNOWN:
        raise ConfigError(f"optimizer.name={optimizer!r} has no scaling rule: allowed "
                          f"{', '.join(_KNOWN)}")
    return "sgd" if optimizer in _SGD else "adam" if optimizer in _ADAM else "rmsprop"


def _check_kappa(kappa) -> float:
    try:
        value = float(kappa)
    except (TypeError, ValueError):
        value = math.nan
    check(math.isfinite(value) and value > 0, "scaling.kappa", kappa, "a finite number > 0")
    return value


def _scale_batch(out: dict, kappa: float) -> None:
    if out.get("batch_size") is None:
        return
    batch = out["batch_size"] * kappa
    check(abs(batch - round(batch)) < 1e-9 * max(1.0, batch) and round(batch) >= 1,
          "batch_size", out["batch_size"],
          f"a batch size that kappa={kappa:g} maps to a positive integer (got {batch:g})")
    out["batch_size"] = int(round(batch))


def _scale_beta(out: dict, key: str, kappa: float) -> None:
    if out.get(key) is None:
        return
    beta = float(out[key])
    new = 1.0 - kappa * (1.0 - beta)
    if not 0.0 <= new < 1.0:
        limit = f"kappa <= {1.0 / (1.0 - beta):g}" if beta < 1.0 else "beta < 1"
        raise ConfigError(f"optimizer.{key}={beta!r} cannot be scaled by kappa={kappa:g}: "
                          f"1 - kappa*(1 - {key}) = {new:g} is outside [0, 1) (needs {limit}; "
                          "tune at the largest batch and scale down)")
    out[key] = new


def _scale(hparams: dict, key: str, factor: float) -> None:
    if hparams.get(key) is not None:
        hparams[key] = float(hparams[key]) * factor


def sqrt_scaling(hparams: dict, kappa: float, *, optimizer: str = "adam") -> dict:
    r"""Square-root scaling rule for batch size ``B -> kappa * B`` (Malladi et al. 2022).

    .. math::
      \eta' = \sqrt\kappa\,\eta,\quad \beta_i' = 1 - \kappa(1-\beta_i),\quad
      \epsilon' = \epsilon/\sqrt\kappa \text{ (adam, adamw)},\
      \epsilon' = \epsilon/\kappa \text{ (rmsprop)},\quad
      \lambda' = \sqrt\kappa\,\lambda,\quad B' = \kappa B.

    For ``adam``/``adamw`` both ``b1`` and ``b2`` are scaled; for ``rmsprop`` only ``b2`` (its
    decay). For the SGD family (``sgd``, ``gd``, ``momentum``, ``nesterov``) only ``lr`` is scaled
    (the Krizhevsky/Hoffer √ rule, which the SGD SDE says is *wrong*: a control). Keys an optimizer
    does not use are copied unchanged.

    Args:
      hparams: config-keyed hyperparameters (``lr``, ``b1``, ``b2``, ``eps``, ``weight_decay``,
        ``momentum``, optional ``batch_size``); missing or ``None`` keys are skipped.
      kappa: batch-size multiplier, > 0 (κ < 1 scales down).
      optimizer: registry name of the optimizer.

    Returns:
      A new dict with the scaled values.

    Raises:
      ConfigError: if a scaled β leaves [0, 1), κ ≤ 0, or κ·B is not an integer.
    """
    kappa = _check_kappa(kappa)
    family = _family(optimizer)
    out = dict(hparams)
    root = math.sqrt(kappa)
    _scale(out, "lr", root)
    if family == "adam":
        _scale_beta(out, "b1", kappa)
        _scale_beta(out, "b2", kappa)
        _scale(out, "eps", 1.0 / root)
        _scale(out, "weight_decay", root)
    elif family == "rmsprop":
        _scale_beta(out, "b2", kappa)
        _scale(out, "eps", 1.0 / kappa)
        _scale(out, "weight_decay", root)
    _scale_batch(out, kappa)
    return out


def linear_scaling(hparams: dict, kappa: float, *, optimizer: str = "sgd") -> dict:
    r"""Linear scaling rule for batch size ``B -> kappa * B`` (Goyal et al. 2017).

    .. math::
      \eta' = \kappa\,\eta,\qquad B' = \kappa B,

    every other hyperparameter unchanged (momentum, betas, ε, decoupled weight decay: with η·λ decay
    per step and η of SDE time per step, λ is already invariant). It is the SDE-preserving rule for
    the SGD family and the *wrong* rule for adaptive optimizers (a control).

    Args:
      hparams: config-keyed hyperparameters (see ``sqrt_scaling``).
      kappa: batch-size multiplier, > 0.
      optimizer: registry name of the optimizer.

    Returns:
      A new dict with the scaled values.

    Raises:
      ConfigError: if κ ≤ 0, the optimizer is unknown, or κ·B is not an integer.
    """
    kappa = _check_kappa(kappa)
    _family(optimizer)
    out = dict(hparams)
    _scale(out, "lr", kappa)
    _scale_batch(out, kappa)
    return out


def no_scaling(hparams: dict, kappa: float, *, optimizer: str = "sgd") -> dict:
    """Change the batch size by ``kappa`` and nothing else (the unscaled control).

    Args:
      hparams: config-keyed hyperparameters.
      kappa: batch-size multiplier, > 0.
      optimizer: registry name of the optimizer (unused beyond validation).

    Returns:
      A new dict with ``batch_size`` (if present) multiplied by κ.
    """
    kappa = _check_kappa(kappa)
    _family(optimizer)
    out = dict(hparams)
    _scale_batch(out, kappa)
    return out


SCALING_RULES.register("none")(no_scaling)
SCALING_RULES.register("sqrt")(sqrt_scaling)
SCALING_RULES.register("linear")(linear_scaling)


def apply_scaling(rule: str, optimizer_name: str, hparams: dict, kappa: float) -> dict:
    """Apply the scaling rule named ``rule`` (``"none"``, ``"sqrt"``, ``"linear"``).

    The config hook for ``scaling.rule=<rule> scaling.kappa=<kappa>``: the base config is tuned at
    batch B0 and the run uses κ·B0. Write the returned values to the run summary.

    Args:
      rule: a name in ``SCALING_RULES``.
      optimizer_name: registry name of the optimizer (``optimizer.name``).
      hparams: config-keyed hyperparameters at the base batch size.
      kappa: batch-size multiplier, > 0.

    Returns:
      A new dict of hyperparameters for batch size κ·B0.

    Raises:
      ConfigError: on an unknown rule or optimizer, κ ≤ 0, or a β pushed out of [0, 1).
    """
    return SCALING_RULES.get(rule)(hparams, kappa, optimizer=optimizer_name)


def steps_multiplier(kappa: float) -> float:
    """Steps at batch κ·B per step at batch B at a fixed number of epochs: ``1 / kappa``.

    Args:
      kappa: batch-size multiplier, > 0.

    Returns:
      ``1 / kappa``.
    """
    return 1.0 / _check_kappa(kappa)
