"""Name → (optax factory, hyperparameter names) registry."""

from collections.abc import Callable
from typing import NamedTuple

import optax

from dynamics.optim import transforms
from dynamics.errors import ConfigError
from dynamics.registry import Registry


class OptimizerSpec(NamedTuple):
    """How to build one optimizer: an optax factory and the config keys it reads.

    ``hparams`` maps the factory's argument name to the config key (``optimizer.<key>``).
    """

    factory: Callable[..., optax.GradientTransformation]
    hparams: dict[str, str]
    static: dict[str, object] = {}
    flags: dict[str, str] = {}  # factory argument -> config key of a static (not traced) boolean


OPTIMIZERS: Registry[OptimizerSpec] = Registry("optimizer", "optimizer.name")

_LR = {"learning_rate": "lr"}
OPTIMIZERS.register("gd")(OptimizerSpec(transforms.gd, {**_LR, "weight_decay": "weight_decay"}))
OPTIMIZERS.register("normalized_gd")(OptimizerSpec(transforms.normalized_gd, _LR))
OPTIMIZERS.register("momentum")(OptimizerSpec(optax.sgd, {**_LR, "momentum": "momentum"}))
OPTIMIZERS.register("nesterov")(
    OptimizerSpec(optax.sgd, {**_LR, "momentum": "momentum"}, {"nesterov": True}))
OPTIMIZERS.register("adam")(
    OptimizerSpec(optax.adam, {**_LR, "b1": "b1", "b2": "b2", "eps": "eps"}))
OPTIMIZERS.register("adamw")(OptimizerSpec(
    optax.adamw, {**_LR, "b1": "b1", "b2": "b2", "eps": "eps", "weight_decay": "weight_decay"}))
OPTIMIZERS.register("rmsprop")(
    OptimizerSpec(optax.rmsprop, {**_LR, "decay": "b2", "eps": "eps"},
                  flags={"bias_correction": "bias_correction"}))


def hyperparams_of(name: str, config: dict) -> dict[str, float]:
    """The traced hyperparameters of optimizer ``name``, read from a config mapping by key."""
    spec = OPTIMIZERS.get(name)
    return {arg: float(config[key]) for arg, key in spec.hparams.items()}


def build_optimizer(name: str, /, **config) -> optax.GradientTransformation:
    """Build optimizer ``name`` with hyperparameters injected into its state.

    Args:
      name: a registered name (``gd``, ``momentum``, ``nesterov``, ``adam``, ``adamw``, ``rmsprop``).
      **config: values by config key (``lr``, ``momentum``, ``b1``, ``b2``, ``eps``,
        ``weight_decay``); keys the optimizer does not use are ignored.
    """
    spec = OPTIMIZERS.get(name)
    missing = [key for key in spec.hparams.values() if config.get(key) is None]
    if missing:
        raise ConfigError(f"optimizer.{missing[0]} is missing: optimizer {name!r} needs "
                          f"{', '.join('optimizer.' + k for k in spec.hparams.values())}")
    hparams = hyperparams_of(name, config)
    static = {**spec.static, **{arg: bool(config.get(key, False)) for arg, key in spec.flags.items()}}
    return optax.inject_hyperparams(spec.factory, static_args=tuple(static))(**hparams, **static)
