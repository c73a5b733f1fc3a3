"""Name → (optax factory, hyperparameter names) registry."""

import inspect
from collections.abc import Callable
from typing import NamedTuple

import optax

from dynamics.optim import transforms
from dynamics.optim.aliases import ALIASES, alias_names, build_alias, get_alias
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


def _house_extra_args(name: str, args: dict) -> dict:
    """``optimizer.args`` for a house optimizer: arguments of its optax factory that no common
    ``optimizer.*`` key sets (e.g. ``nesterov`` is fixed by the name; ``adam``'s ``eps_root``)."""
    spec = OPTIMIZERS.get(name)
    params = inspect.signature(spec.factory).parameters
    taken = set(spec.hparams) | set(spec.static) | set(spec.flags)
    allowed = [k for k in params if k not in taken]
    for key in args:
        if key in taken:
            common = {**spec.hparams, **spec.flags}.get(key)
            hint = f"set optimizer.{common}" if common else "fixed by the optimizer's name"
            raise ConfigError(f"optimizer.args.{key} is invalid for optimizer {name!r}: {hint}")
        if key not in allowed:
            raise ConfigError(f"optimizer.args.{key} is not an argument of optimizer {name!r}: "
                              f"allowed {', '.join(allowed) or 'none'}")
    return dict(args)


TARGET = "target"  # optimizer.name=target: your own optax transformation from optimizer.target


def _target_factory(target: str | None):
    from dynamics.targets import load_target

    return load_target(target, "optimizer.target")


def is_traced(value) -> bool:
    """Whether an optimizer argument is traced under ``inject_hyperparams`` (a number, not a flag)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _target_kwargs(factory, lr, kwargs: dict) -> dict:
    """``optimizer.kwargs`` plus ``learning_rate=optimizer.lr`` when the target takes one."""
    from dynamics.targets import takes

    kwargs = dict(kwargs or {})
    if takes(factory, "learning_rate"):
        kwargs.setdefault("learning_rate", lr)
    return kwargs


def build_target(target: str | None, lr, kwargs: dict) -> optax.GradientTransformation:
    """``optimizer.target`` called with ``optimizer.kwargs`` (and ``learning_rate=optimizer.lr`` if it
    takes one) under ``optax.inject_hyperparams``: numeric kwargs are traced. One-line ``ConfigError``
    when the result is not an optax ``GradientTransformation``."""
    factory = _target_factory(target)
    kwargs = _target_kwargs(factory, lr, kwargs)
    static = tuple(k for k, v in kwargs.items() if not is_traced(v))
    try:
        plain = factory(**kwargs)
    except TypeError as err:
        raise ConfigError(f"optimizer.target={target!r} is invalid: calling it with optimizer.kwargs="
                          f"{kwargs} failed ({err})") from None
    if not isinstance(plain, optax.GradientTransformation):
        raise ConfigError(f"optimizer.target={target!r} is invalid: it returned "
                          f"{type(plain).__name__}; allowed an optax GradientTransformation")
    return optax.inject_hyperparams(factory, static_args=static)(**kwargs)


def check_optimizer(name: str, args: dict | None = None) -> None:
    """Fail in one line for an unknown name, an unsupported alias or an unknown ``optimizer.args`` key
    (cheap: no optimizer is built)."""
    args = dict(args or {})
    if name == TARGET:
        return  # checked by build_target (validation calls it: the target is imported and called)
    if name in OPTIMIZERS:
        _house_extra_args(name, args)
        return
    if name not in ALIASES:
        raise ConfigError(f"optimizer.name={name!r} is invalid: allowed {', '.join(OPTIMIZERS)} or an "
                          f"optax alias ({', '.join(n for n in alias_names() if n not in OPTIMIZERS)})")
    spec = get_alias(name)
    if spec.status == "unsupported":
        raise ConfigError(f"optimizer.name={name!r} cannot run in this trainer: {spec.reason}")
    unknown = [k for k in args if k not in spec.args]
    if unknown:
        raise ConfigError(f"optimizer.args.{unknown[0]} is not an argument of {spec.module}.{name}: "
                          f"allowed {', '.join(spec.args) or 'none'}")


def hyperparams_of(name: str, config: dict) -> dict:
    """The optimizer's hyperparameters under their optax names, read from a config mapping by key
    (``lr``, ``momentum``, ... and the free ``args``): numbers as floats, flags as given."""
    args = dict(config.get("args") or {})
    if name == TARGET:
        args = _target_kwargs(_target_factory(config.get("target")), config["lr"],
                              {**args, **(config.get("kwargs") or {})})
        return {k: _plain(v) for k, v in args.items()}
    if name in OPTIMIZERS:
        spec = OPTIMIZERS.get(name)
        out = {arg: float(config[key]) for arg, key in spec.hparams.items()}
        out.update({arg: bool(config.get(key, False)) for arg, key in spec.flags.items()})
        out.update(spec.static)
    else:
        spec = get_alias(name)
        out = {spec.lr_arg: float(config["lr"])} if spec.lr_arg else {}
    out.update({k: _plain(v) for k, v in args.items()})
    return out


def _plain(value):
    return float(value) if is_traced(value) else value


def build_optimizer(name: str, /, **config) -> optax.GradientTransformationExtraArgs:
    """Build optimizer ``name`` with its numeric hyperparameters injected into its state.

    Args:
      name: a house name (``gd``, ``normalized_gd``, ``momentum``, ``nesterov``, ``adam``, ``adamw``,
        ``rmsprop``) or any optax alias the trainer can run (``dynamics.optim.aliases``).
      **config: values by config key (``lr``, ``momentum``, ``b1``, ``b2``, ``eps``,
        ``weight_decay``, ``bias_correction``; keys the optimizer does not use are ignored) and
        ``args``: further arguments under their optax names (``optimizer.args``), traced when numeric.
    """
    args = dict(config.get("args") or {})
    check_optimizer(name, args)
    if name == TARGET:
        return build_target(config.get("target"), config.get("lr"),
                            {**args, **(config.get("kwargs") or {})})
    if name not in OPTIMIZERS:
        return build_alias(name, config.get("lr"), **args)
    spec = OPTIMIZERS.get(name)
    missing = [key for key in spec.hparams.values() if config.get(key) is None]
    if missing:
        raise ConfigError(f"optimizer.{missing[0]} is missing: optimizer {name!r} needs "
                          f"{', '.join('optimizer.' + k for k in spec.hparams.values())}")
    traced = {arg: float(config[key]) for arg, key in spec.hparams.items()}
    static = {**spec.static, **{arg: bool(config.get(key, False)) for arg, key in spec.flags.items()}}
    extra = _house_extra_args(name, args)
    static.update({k: v for k, v in extra.items() if not is_traced(v)})
    traced.update({k: v for k, v in extra.items() if is_traced(v)})
    return optax.inject_hyperparams(spec.factory, static_args=tuple(static))(**traced, **static)


def extra_update_args(name: str) -> tuple[str, ...]:
    """The keyword arguments optimizer ``name``'s update needs besides grads, state and params
    (``value``, ``grad``, ``value_fn``, ``obj_fn``; empty for house optimizers)."""
    return () if name in OPTIMIZERS or name == TARGET else get_alias(name).extra_args
