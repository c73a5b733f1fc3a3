r"""Self-compiling entry points: the call a user writes in a notebook is the jitted one.

``@self_compiling(static=...)`` wraps a function ``raw(fn, params, ..., **options)`` whose first
argument is a user function (a loss ``fn(params) -> scalar`` or an ``apply_fn(params, x)``). Called
with concrete arrays, the wrapper

1. traces ``fn`` once at the example arguments to a jaxpr (``jax.make_jaxpr``): every array ``fn``
   closes over (data, targets, a frozen model's other state) becomes a jaxpr constant, and Python
   scalars become literals in its text;
2. hoists those constants into *arguments* of the compiled function, so XLA never constant-folds
   them and a changed array in the closure gives the new answer;
3. looks up the compiled function in a bounded LRU cache keyed by the jaxpr text (which names the
   computation, literals included), the shapes and dtypes of the hoisted constants and of the
   dynamic arguments, the static options and the x64 flag, and calls it.

So a repeated call, even with a fresh ``lambda`` wrapping the same computation, costs one trace of
``fn`` (about a millisecond for an MLP) plus the compiled solve; nothing is retraced or recompiled.
Inside a caller's transformation (any argument or constant is a tracer: ``jax.jit``, ``vmap``,
``grad``) the wrapper calls ``raw`` directly, so jitting it yourself keeps working.

The cache holds at most :data:`MAX_ENTRIES` compiled functions (least recently used first out); it
keeps the jaxprs but not the hoisted constants, which are arguments. :func:`cache_info` reports hits
and misses, :func:`cache_clear` empties it.
"""

import functools
import inspect
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import jax
from jax.core import eval_jaxpr

MAX_ENTRIES = 64

_lock = threading.Lock()
_cache: "OrderedDict[tuple, Callable]" = OrderedDict()
_stats = {"hits": 0, "misses": 0, "raw_calls": 0}


def cache_info() -> dict:
    """``{"hits", "misses", "raw_calls", "size", "max_entries"}`` of the compiled-function cache."""
    with _lock:
        return {**_stats, "size": len(_cache), "max_entries": MAX_ENTRIES}


def cache_clear() -> None:
    """Drop every compiled function and reset the counters."""
    with _lock:
        _cache.clear()
        for k in _stats:
            _stats[k] = 0


def is_traced(tree) -> bool:
    """Whether any leaf of ``tree`` is a JAX tracer (we are inside a caller's transformation)."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(tree))


def _aval_key(tree) -> tuple:
    """Hashable structure + (shape, dtype, weak type) of every leaf; Python scalars by type."""
    leaves, treedef = jax.tree.flatten(tree)
    sig = []
    for leaf in leaves:
        if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
            sig.append((tuple(leaf.shape), str(leaf.dtype), bool(getattr(leaf, "weak_type", False))))
        else:
            sig.append((type(leaf).__name__,))
    return treedef, tuple(sig)


def _freeze(value):
    """A hashable stand-in for a static option (lists, dicts and pytrees of Python values)."""
    try:
        hash(value)
        return value
    except TypeError:
        leaves, treedef = jax.tree.flatten(value)
        return treedef, tuple(_freeze(leaf) for leaf in leaves)


def hoist(fn: Callable, *example_args):
    """Trace ``fn(*example_args)`` and split it into a pure function and the arrays it closes over.

    Returns:
      ``(pure, consts, fingerprint)``: ``pure(consts, *args)`` equals ``fn(*args)`` for arguments
      with the example's structure, shapes and dtypes; ``consts`` is the list of closed-over arrays
      (to be passed as jit arguments); ``fingerprint`` is the jaxpr text with the input and output
      structures, equal for two functions that compute the same thing.
    """
    # A fresh wrapper on every call: make_jaxpr caches traces by function identity, which would hand
    # back the constants of an earlier call after the closure was rebound.
    closed, out_shape = jax.make_jaxpr(lambda *a: fn(*a), return_shape=True)(*example_args)
    jaxpr = closed.jaxpr
    out_tree = jax.tree.structure(out_shape)
    in_tree = jax.tree.structure(example_args)

    def pure(consts, *args):
        if jax.tree.structure(args) != in_tree:
            raise TypeError(f"expected arguments with structure {in_tree}, got "
                            f"{jax.tree.structure(args)}")
        out = eval_jaxpr(jaxpr, list(consts), *jax.tree.leaves(args))
        return jax.tree.unflatten(out_tree, out)

    fingerprint = f"{in_tree}\n{out_tree}\n{jaxpr}"
    return pure, list(closed.consts), fingerprint


def self_compiling(*, static: Sequence[str], example: Callable | None = None,
                   use_raw: Callable | None = None):
    """Decorator: make ``raw(fn, ...)`` compile itself with ``fn`` static and its constants hoisted.

    Args:
      static: names of the options that select the computation (shapes, method names, iteration
        counts used as Python ints); the other arguments are traced jit arguments (floats such as
        ``tol`` included, so changing them does not recompile).
      example: ``example(arguments) -> tuple`` the arguments at which ``fn`` is traced, from the
        bound arguments of the call (a dict); default ``(params,)`` with ``params`` the second
        parameter of ``raw``. ``fn`` must later be called only with arguments shaped like these.
      use_raw: ``use_raw(arguments) -> bool``: call ``raw`` uncompiled for these arguments (e.g. when
        ``fn`` will be called at shapes other than the example's).

    The wrapped function has the signature and docstring of ``raw``; ``wrapped.raw`` is ``raw``.
    """
    static = tuple(static)

    def decorate(raw):
        sig = inspect.signature(raw)
        names = list(sig.parameters)
        fn_name, params_name = names[0], names[1]
        unknown = set(static) - set(names)
        if unknown:
            raise ValueError(f"{raw.__name__}: static names {sorted(unknown)} are not parameters")
        get_example = example or (lambda a: (a[params_name],))

        @functools.wraps(raw)
        def entry(*args, **kwargs):
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            fn = arguments.pop(fn_name)
            statics = {k: arguments.pop(k) for k in static}
            dynamic = arguments
            if is_traced(dynamic) or (use_raw is not None and use_raw(bound.arguments)):
                return _raw_call(raw, args, kwargs)
            try:
                pure, consts, fingerprint = hoist(fn, *get_example(bound.arguments))
            except Exception:  # let the raw path raise its own error
                return _raw_call(raw, args, kwargs)
            if is_traced(consts):
                return _raw_call(raw, args, kwargs)
            key = (raw, fingerprint, _aval_key(consts), _aval_key(dynamic),
                   tuple((k, _freeze(v)) for k, v in statics.items()),
                   bool(jax.config.jax_enable_x64))
            with _lock:
                compiled = _cache.get(key)
                if compiled is not None:
                    _cache.move_to_end(key)
                    _stats["hits"] += 1
            if compiled is None:
                compiled = _build(raw, pure, statics)
                with _lock:
                    _stats["misses"] += 1
                    _cache[key] = compiled
                    while len(_cache) > MAX_ENTRIES:
                        _cache.popitem(last=False)
            return compiled(consts, dynamic)

        entry.raw = raw
        return entry

    return decorate


def _raw_call(raw, args, kwargs):
    with _lock:
        _stats["raw_calls"] += 1
    return raw(*args, **kwargs)


def _build(raw, pure, statics):
    """``jit((consts, dynamic) -> raw(pure-with-consts, **dynamic, **statics))``."""

    def run(consts, dynamic):
        return raw(lambda *a: pure(consts, *a), **dynamic, **statics)

    return jax.jit(run)
