"""Your own components by import path: ``<module>:<callable>`` from config (``model.target``,
``optimizer.target``), imported and checked before anything is built or compiled.

The module is imported as Python would from the current directory (``python -m dynamics.run`` puts it on
``sys.path``), so ``examples.custom:mlp`` works from the repository root and ``mypkg.models:net`` from
wherever ``mypkg`` is importable. A target that cannot be imported, is not callable, or returns the
wrong kind of object fails with one ``ConfigError`` line naming the key.
"""

import importlib
import inspect
from collections.abc import Callable

from dynamics.errors import ConfigError


def load_target(spec: str | None, key: str) -> Callable:
    """The callable ``<module>:<attribute>`` (dots allowed in the attribute) named by config ``key``."""
    if not spec or ":" not in spec:
        raise ConfigError(f"{key}={spec!r} is invalid: allowed '<module>:<callable>', e.g. "
                          "'examples.custom:mlp'")
    module_name, attr = spec.split(":", 1)
    try:
        obj = importlib.import_module(module_name)
    except Exception as err:  # ImportError, or an error raised by the module itself
        raise ConfigError(f"{key}={spec!r} is invalid: cannot import module {module_name!r} "
                          f"({type(err).__name__}: {err})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{key}={spec!r} is invalid: module {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{key}={spec!r} is invalid: {attr!r} is not callable")
    return obj


def _parameters(fn: Callable) -> dict:
    try:
        return dict(inspect.signature(fn).parameters)
    except (TypeError, ValueError):  # a callable without a signature (some builtins)
        return {}


def takes(fn: Callable, name: str) -> bool:
    """Whether ``fn``'s signature names the argument ``name``."""
    return name in _parameters(fn)


def call_with(fn: Callable, kwargs: dict, available: dict) -> object:
    """``fn(**kwargs, **those of available whose names fn's signature takes)`` (``out_dim``,
    ``input_shape``, ``learning_rate``, ...); kwargs win over available values."""
    params = _parameters(fn)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    extra = {k: v for k, v in available.items() if (k in params or takes_any) and k not in kwargs}
    return fn(**kwargs, **extra)


__all__ = ["call_with", "load_target", "takes"]
