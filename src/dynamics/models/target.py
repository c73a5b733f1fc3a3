"""``model.name=target``: your own model from ``model.target='<module>:<callable>'`` and ``model.kwargs``.

The callable is called with ``model.kwargs`` plus, where its signature names them, ``out_dim`` (the
data set's number of outputs), ``input_shape`` (without the batch axis) and, for flax.nnx, ``rngs``. It
returns one of

* a Flax linen ``Module``: params are its ``params`` collection, initialized on a zero batch;
* a flax.nnx ``Module`` (its callable must take ``rngs``): params are its ``nnx.Param`` state, built
  anew from each run's init key; other state (batch statistics) is not trained;
* an ``(init, apply)`` pair: ``init(key) -> params`` and ``apply(params, x) -> outputs``.

Outputs must be ``(N, out_dim)``.
"""

from flax import linen as nn

from dynamics.errors import ConfigError
from dynamics.models.base import MODELS, Model, from_flax
from dynamics.targets import call_with, load_target

KINDS = "a flax linen Module, a flax.nnx Module or an (init, apply) pair"


def _from_nnx(factory, kwargs: dict, available: dict) -> Model:
    from flax import nnx

    graphdef, _, rest = nnx.split(call_with(factory, kwargs, {**available, "rngs": nnx.Rngs(0)}),
                                  nnx.Param, ...)

    def init(key):
        module = call_with(factory, kwargs, {**available, "rngs": nnx.Rngs(key)})
        return nnx.split(module, nnx.Param, ...)[1]

    def apply(params, x):
        return nnx.merge(graphdef, params, rest)(x)

    return Model(init, apply)


def model_kind(obj) -> str | None:
    """``"linen"``, ``"nnx"``, ``"pair"`` or ``None`` for what a model target returned."""
    if isinstance(obj, nn.Module):
        return "linen"
    try:
        from flax import nnx
    except ImportError:  # pragma: no cover (flax ships nnx)
        nnx = None
    if nnx is not None and isinstance(obj, nnx.Module):
        return "nnx"
    if isinstance(obj, tuple) and len(obj) == 2 and all(callable(f) for f in obj):
        return "pair"
    return None


def check_model_target(target: str | None, kwargs: dict, input_shape=None, out_dim=None) -> str:
    """Import and call the target once; its kind, or a one-line ``ConfigError``."""
    factory = load_target(target, "model.target")
    available = {"out_dim": out_dim, "input_shape": input_shape}
    if "rngs" in _params(factory):
        from flax import nnx

        available["rngs"] = nnx.Rngs(0)
    try:
        obj = call_with(factory, dict(kwargs or {}), available)
    except TypeError as err:
        raise ConfigError(f"model.target={target!r} is invalid: calling it with model.kwargs="
                          f"{dict(kwargs or {})} failed ({err})") from None
    kind = model_kind(obj)
    if kind is None:
        raise ConfigError(f"model.target={target!r} is invalid: it returned {type(obj).__name__}; "
                          f"allowed {KINDS}")
    return kind


def _params(fn) -> list[str]:
    import inspect

    try:
        return list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return []


@MODELS.register("target")
def target_model(input_shape, out_dim, *, target=None, kwargs=None, **_) -> Model:
    """Your model from ``model.target`` (module docstring)."""
    kwargs = dict(kwargs or {})
    available = {"out_dim": out_dim, "input_shape": tuple(input_shape)}
    kind = check_model_target(target, kwargs, tuple(input_shape), out_dim)
    factory = load_target(target, "model.target")
    if kind == "nnx":
        return _from_nnx(factory, kwargs, available)
    obj = call_with(factory, kwargs, available)
    if kind == "linen":
        return from_flax(obj, tuple(input_shape))
    init, apply = obj
    return Model(init, apply)


__all__ = ["check_model_target", "model_kind", "target_model"]
