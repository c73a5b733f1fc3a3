r"""Every optimizer alias of optax core and ``optax.contrib`` by name, with traced hyperparameters.

The table :data:`ALIASES` is built by introspection of the installed optax (0.2.8): the public functions
of ``optax._src.alias`` (``adam``, ``nadam`` = a ``functools.partial``, ``optimistic_adam_v2``, ...) and
the lower-case functions of ``optax.contrib`` that are not ``scale_by_*`` transforms or helpers. Each
entry says how a plain trainer, ``tx.update(grads, state, params, **extra)``, can drive it:

* ``status="plain"``: gradients and parameters are all it needs (params are always passed: ``adamw``,
  ``lamb``, ``muon``... raise without them);
* ``status="extra_args"``: the update also needs keyword arguments, named in ``extra_args`` following
  optax's extra-args convention: ``value`` (the loss at ``params``: ``polyak_sgd``, ``momo``,
  ``momo_adam``), ``value``/``grad``/``value_fn`` (``lbfgs``'s zoom line search; it forwards unknown
  keywords to ``value_fn`` and fails, so give it exactly these), ``obj_fn`` (``sophia``'s Hutchinson
  Hessian diagonal). :func:`extra_args_for` builds them; ``value_fn``/``obj_fn`` must be functions of the
  parameters only (closing over the batch), built inside the jitted step;
* ``status="unsupported"``: with the ``reason`` (wrappers needing a base optimizer, SAM's two-gradient
  step, DP-SGD's per-example gradients, ``reduce_on_plateau`` which is a learning-rate scaler).

:func:`build_alias` wraps the factory in ``optax.inject_hyperparams``: every numeric argument, defaults
included, lives in ``state.hyperparams`` as an array, so it is traced (a sweep reuses one compilation)
and can be ``vmap``-ped. Arguments that drive Python control flow or shapes stay static
(``static``: ``adafactor.min_dim_size_to_factor``, ``lbfgs.memory_size``, ``galore.rank`` and
``update_proj_gap``, ``muon.ns_steps``, ``schedule_free_*.warmup_steps``), and so does every callable
argument other than the learning rate (``inject_hyperparams`` would otherwise call a mask or
``clip_value_fn`` as a schedule of the step count: a callable ``mask`` silently switches weight decay
off). Booleans, strings, ``None`` and tuples are static by ``inject_hyperparams``' own rule (so
``dadapt_adamw``/``prodigy``'s ``betas`` tuple is not vmappable).

Caveats (papers/optimizers.md §0): ``rprop``'s ``learning_rate`` only sets the initial step sizes at
``init``; ``polyak_sgd`` has no learning rate (``max_learning_rate`` plays its part); ``adadelta``'s
default ``learning_rate=None`` ascends, so a learning rate is always passed; ``noisy_sgd`` gets
``key=0`` (an integer seed, traced) unless a ``key`` or ``seed`` is given; ``schedule_free_*`` train the
sequence :math:`y` (evaluate at ``optax.contrib.schedule_free_eval_params``); ``optimistic_adam`` is
deprecated by optax (use ``optimistic_adam_v2``).
"""

import functools
import inspect
from collections.abc import Callable
from typing import NamedTuple

import jax
import optax
import optax.contrib
from optax._src import alias as _core_alias

from dynamics.errors import ConfigError

PyTree = object
STATUSES = ("plain", "extra_args", "unsupported")


class AliasSpec(NamedTuple):
    """One optax optimizer alias and how the trainer drives it.

    Attributes:
      name: the alias name (``optimizer.name``).
      module: ``"optax"`` or ``"optax.contrib"``.
      factory: the optax function (or ``functools.partial``).
      status: ``"plain"``, ``"extra_args"`` or ``"unsupported"``.
      lr_arg: the argument :func:`build_alias`'s ``learning_rate`` goes to (``"learning_rate"``,
        ``"max_learning_rate"`` for ``polyak_sgd``), or ``None``.
      args: the other arguments with their defaults (``inspect.Parameter.empty`` when required).
      static: arguments kept static under ``inject_hyperparams`` (besides booleans, strings, ``None``
        and tuples, which it keeps static itself).
      extra_args: keyword arguments the update needs (``value``, ``grad``, ``value_fn``, ``obj_fn``).
      reason: why it cannot run (``unsupported``), or a caveat.
    """

    name: str
    module: str
    factory: Callable
    status: str
    lr_arg: str | None
    args: dict
    static: tuple[str, ...]
    extra_args: tuple[str, ...]
    reason: str = ""


# Not optimizers: helpers and transforms exported beside the aliases.
HELPERS = {
    "differentially_private_aggregate": "a gradient transformation (clip + noise), used by dpsgd",
    "hutchinson_estimator_diag_hessian": "a Hessian-diagonal estimator, used by sophia",
    "normalize": "a gradient transformation (g/‖g‖), e.g. SAM's adversary",
    "schedule_free_eval_params": "evaluation parameters of a schedule-free state",
    "split_real_and_imaginary": "a wrapper for complex parameters",
}
UNSUPPORTED = {
    "sam": "two-gradient step: its update alternates adversarial and outer steps, takes only "
           "grad_fn and rejects the trainer's extra arguments; needs two optimizers",
    "dpsgd": "needs per-example gradients (a leading batch axis on every gradient leaf) and "
             "l2_norm_clip, noise_multiplier",
    "mechanize": "a wrapper: needs a base_optimizer transformation, not a by-name alias",
    "schedule_free": "a wrapper: needs a base_optimizer (use schedule_free_sgd or "
                     "schedule_free_adamw)",
    "reduce_on_plateau": "not an optimizer: a learning-rate scaler chained after one",
    "lookahead": "a wrapper: needs a fast optimizer and LookaheadParams (fast, slow) as the "
                 "parameters",
}
EXTRA_ARGS = {
    "polyak_sgd": ("value",),
    "momo": ("value",),
    "momo_adam": ("value",),
    "lbfgs": ("value", "grad", "value_fn"),
    "sophia": ("obj_fn",),
}
STATIC = {
    "adafactor": ("min_dim_size_to_factor",),
    "lbfgs": ("memory_size",),
    "galore": ("rank", "update_proj_gap"),
    "muon": ("ns_steps",),
    "schedule_free_adamw": ("warmup_steps",),
    "schedule_free_sgd": ("warmup_steps",),
}
CAVEATS = {
    "rprop": "learning_rate only sets the initial per-coordinate step sizes (at init)",
    "polyak_sgd": "no learning rate: learning_rate goes to max_learning_rate",
    "adadelta": "its default learning_rate=None ascends; a learning rate is always passed",
    "noisy_sgd": "key defaults to the integer seed 0 (traced)",
    "optimistic_adam": "deprecated by optax: use optimistic_adam_v2",
    "schedule_free_sgd": "params are y; evaluate at optax.contrib.schedule_free_eval_params",
    "schedule_free_adamw": "params are y; evaluate at optax.contrib.schedule_free_eval_params",
    "acprop": "optax's step uses no momentum (g/(√ŝ+eps))",
    "dadapt_adamw": "betas is a tuple: static, not vmappable",
    "prodigy": "betas is a tuple: static, not vmappable",
}
_LR_ARGS = ("learning_rate", "max_learning_rate")


def _unwrap(obj):
    return obj.func if isinstance(obj, functools.partial) else obj


def _core_names() -> list[str]:
    out = []
    for name in dir(_core_alias):
        if name.startswith("_"):
            continue
        obj = getattr(_core_alias, name)
        fn = _unwrap(obj)
        if inspect.isfunction(fn) and fn.__module__ == _core_alias.__name__ and hasattr(optax, name):
            out.append(name)
    return out


def _contrib_names() -> list[str]:
    out = []
    for name in dir(optax.contrib):
        obj = getattr(optax.contrib, name)
        if (name.startswith("_") or not name[0].islower() or name.startswith("scale_by_")
                or name in HELPERS or not inspect.isfunction(_unwrap(obj))):
            continue
        out.append(name)
    return out


def _spec(name: str, module: str, factory: Callable) -> AliasSpec:
    params = inspect.signature(factory).parameters
    lr_arg = next((a for a in _LR_ARGS if a in params), None)
    args = {k: p.default for k, p in params.items()
            if k != lr_arg and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    if name in UNSUPPORTED:
        status, reason = "unsupported", UNSUPPORTED[name]
    elif name in EXTRA_ARGS:
        status, reason = "extra_args", CAVEATS.get(name, "")
    else:
        status, reason = "plain", CAVEATS.get(name, "")
    return AliasSpec(name, module, factory, status, lr_arg, args, STATIC.get(name, ()),
                     EXTRA_ARGS.get(name, ()), reason)


def _build_table() -> dict[str, AliasSpec]:
    table = {}
    for name in _core_names():
        table[name] = _spec(name, "optax", getattr(optax, name))
    for name in _contrib_names():
        table[name] = _spec(name, "optax.contrib", getattr(optax.contrib, name))
    table["lookahead"] = _spec("lookahead", "optax", optax.lookahead)
    return dict(sorted(table.items()))


ALIASES: dict[str, AliasSpec] = _build_table()


def alias_names(status: str | tuple[str, ...] = ("plain", "extra_args")) -> list[str]:
    """Alias names with the given status(es) (default: those the trainer can run)."""
    statuses = (status,) if isinstance(status, str) else tuple(status)
    return [n for n, s in ALIASES.items() if s.status in statuses]


def get_alias(name: str) -> AliasSpec:
    """The table entry of ``name``; ``ConfigError`` naming the known aliases otherwise."""
    if name not in ALIASES:
        raise ConfigError(f"optimizer.name={name!r} is not a known optax optimizer: allowed "
                          f"{', '.join(alias_names())}")
    return ALIASES[name]


def static_args_of(name: str, args: dict | None = None) -> tuple[str, ...]:
    """Arguments kept static under ``inject_hyperparams`` for these ``args``: the alias's ``static``
    plus every callable argument (given or default) other than the learning rate."""
    spec = get_alias(name)
    values = {k: v for k, v in spec.args.items() if v is not inspect.Parameter.empty}
    values.update(args or {})
    static = set(spec.static)
    static.update(k for k, v in values.items() if k != spec.lr_arg and callable(v))
    return tuple(sorted(static))


def build_alias(name: str, learning_rate=None, /, **args) -> optax.GradientTransformationExtraArgs:
    """Build optax alias ``name`` with its numeric hyperparameters injected into the state.

    Args:
      name: an alias of :data:`ALIASES` with status ``plain`` or ``extra_args``.
      learning_rate: the step size, passed as the alias's ``lr_arg``; ``None`` keeps the alias's
        default (``cocob``, ``dog``, ``prodigy``... have one; ``adadelta``'s ``None`` ascends).
      **args: other arguments under their optax names (``b1=0.95``, ``weight_decay=0.1``).

    Returns:
      ``optax.inject_hyperparams(factory, static_args=...)(...)``: ``state.hyperparams[k]`` holds each
      numeric argument as an array (traced, vmappable); call ``update(grads, state, params,
      **extra_args_for(name, ...))``.

    Raises:
      ConfigError: unknown name, an unsupported alias (with the reason), or an argument the alias does
        not take (one line naming the allowed ones).
    """
    spec = get_alias(name)
    if spec.status == "unsupported":
        raise ConfigError(f"optimizer.name={name!r} cannot run in this trainer: {spec.reason}")
    unknown = [k for k in args if k not in spec.args]
    if unknown:
        allowed = ", ".join(spec.args) or "none"
        raise ConfigError(f"optimizer.args.{unknown[0]} is not an argument of {spec.module}.{name}: "
                          f"allowed {allowed}")
    kwargs = dict(args)
    if learning_rate is not None:
        if spec.lr_arg is None:
            raise ConfigError(f"optimizer.lr is invalid for {spec.module}.{name}: it takes no "
                              "learning rate")
        kwargs[spec.lr_arg] = learning_rate
    if name == "noisy_sgd" and kwargs.get("key") is None and kwargs.get("seed") is None:
        kwargs["key"] = 0  # an int seed: traced (vmappable) under inject
    return optax.inject_hyperparams(spec.factory, static_args=static_args_of(name, kwargs))(**kwargs)


def traced_hyperparams(name: str, **args) -> list[str]:
    """Names of the hyperparameters :func:`build_alias` puts in ``state.hyperparams`` (the numeric
    ones, defaults included): the keys a vmapped sweep can vary."""
    import jax.numpy as jnp

    tx = build_alias(name, 0.1 if get_alias(name).lr_arg else None, **args)
    state = jax.eval_shape(tx.init, {"w": jnp.zeros((2, 2))})
    return sorted(state.hyperparams)


def extra_args_for(name: str, *, value=None, grad=None, loss_fn: Callable | None = None) -> dict:
    """The keyword arguments alias ``name``'s update needs, from the trainer's step.

    Args:
      name: the alias.
      value: the loss at the current parameters (on the step's batch).
      grad: its gradient (the update's ``grads``).
      loss_fn: ``loss_fn(params) -> scalar`` on the step's batch, built inside the jitted step.

    Returns:
      ``{}`` for plain aliases; ``{"value": ...}`` (polyak_sgd, momo, momo_adam);
      ``{"value", "grad", "value_fn"}`` (lbfgs); ``{"obj_fn": loss_fn}`` (sophia).
    """
    spec = get_alias(name)
    given = {"value": value, "grad": grad, "value_fn": loss_fn, "obj_fn": loss_fn}
    out = {k: given[k] for k in spec.extra_args}
    missing = [k for k, v in out.items() if v is None]
    if missing:
        raise ValueError(f"{name} needs {', '.join(missing)} in its update")
    return out


def table_rows() -> list[dict]:
    """One row per alias (name, module, status, lr_arg, args, static, extra_args, reason), for the
    README and ``--help``-style listings."""
    return [{"name": s.name, "module": s.module, "status": s.status, "lr_arg": s.lr_arg,
             "args": [k for k in s.args], "static": list(s.static),
             "extra_args": list(s.extra_args), "reason": s.reason} for s in ALIASES.values()]
