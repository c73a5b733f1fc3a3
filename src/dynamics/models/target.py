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
from dynamics.targets import call_with, load_target, takes

KINDS = "a flax linen Module, a flax.nnx Module or an (init, apply) pair"


def _from_nnx(factory, kwargs: dict, available: dict, module) -> Model:
    """Params = the ``nnx.Param`` state of a module built anew from each init key; ``module`` (built
    once, with ``Rngs(0)``) gives the graph and the non-trained state."""
    from flax import nnx

    graphdef, _, rest = nnx.split(module, nnx.Param, ...)

    def init(key):
        return nnx.split(call_with(factory, kwargs, {**available, "rngs": nnx.Rngs(key)}),
                         nnx.Param, ...)[1]

    def apply(params, x):
        return nnx.merge(graphdef, params, rest)(x)

    return Model(init, apply)


def model_kind(obj) -> str | None:
    """``"linen"``, ``"nnx"``, ``"pair"`` or ``None`` for what a model target returned."""
    from flax import nnx

    if isinstance(obj, nn.Module):
        return "linen"
    if isinstance(obj, nnx.Module):
        return "nnx"
    if isinstance(obj, tuple) and len(obj) == 2 and all(callable(f) for f in obj):
        return "pair"
    return None


def check_model_target(target: str | None, kwargs: dict, input_shape=None,
                       out_dim=None) -> tuple[str, object]:
    """Import and call the target once (an nnx factory with ``rngs=Rngs(0)``): ``(kind, what it
    returned)``, or a one-line ``ConfigError``."""
    from flax import nnx

    factory = load_target(target, "model.target")
    available = {"out_dim": out_dim, "input_shape": input_shape}
    if takes(factory, "rngs"):
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
    return kind, obj


@MODELS.register("target")
def target_model(input_shape, out_dim, *, target=None, kwargs=None, **_) -> Model:
    """Your model from ``model.target`` (module docstring)."""
    kwargs = dict(kwargs or {})
    available = {"out_dim": out_dim, "input_shape": tuple(input_shape)}
    kind, obj = check_model_target(target, kwargs, tuple(input_shape), out_dim)
    if kind == "nnx":
        return _from_nnx(load_target(target, "model.target"), kwargs, available, obj)
    if kind == "linen":
        return from_flax(obj, tuple(input_shape), compile_init=False)
    init, apply = obj
    return Model(init, apply)


__all__ = ["check_model_target", "model_kind", "target_model"]
