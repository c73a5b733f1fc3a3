r"""Optimizer-aware sharpness :math:`\lambda_{\max}(P^{-1}H)` and the stability thresholds it is compared to.

An adaptive optimizer written as preconditioned momentum GD, :math:`w \leftarrow w - \eta P_t^{-1} m_t`,
is stable on a quadratic with Hessian :math:`H` (frozen :math:`P`) iff the *preconditioned sharpness*
:math:`\lambda_{\max}(P^{-1}H)` is below the threshold of the momentum scheme (Cohen et al. 2022,
arXiv 2207.14484). :math:`P^{-1}H` is similar to the symmetric :math:`P^{-1/2}HP^{-1/2}`, whose top
eigenvalues are computed here with the top-k solvers.

Bias-correction convention (the anchors disagree, see ``papers/eos.md`` §9). optax Adam's update is
:math:`\hat m_t/(\sqrt{\hat\nu_t + \epsilon_{root}} + \epsilon)` with :math:`\hat m_t = m_t/(1-\beta_1^t)`,
:math:`\hat\nu_t = \nu_t/(1-\beta_2^t)` and :math:`m_t` the raw EMA :math:`\beta_1 m + (1-\beta_1) g`:

* ``convention="locuslab"`` (Cohen et al.'s ``adam.py``, the default): the momentum is the raw EMA, so
  :math:`P_t = (1-\beta_1^t)\,(\sqrt{\hat\nu_t + \epsilon_{root}} + \epsilon)`;
* ``convention="init2winit"`` (``google/init2winit`` ``hessian/precondition.py``): the momentum is
  :math:`\hat m_t`, so :math:`P_t = \sqrt{\hat\nu_t + \epsilon_{root}} + \epsilon`.

They agree once :math:`\beta_1^t \approx 0` (after a few dozen steps at :math:`\beta_1 = 0.9`).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from dynamics.compiled import self_compiling
from dynamics.curvature.hvp import flat_hvp
from dynamics.curvature.topk import TopKResult, eigsh_top_k, initial_block

PyTree = object
CONVENTIONS = ("locuslab", "init2winit")
# optax 0.2.8 does not export the state of ``rmsprop(bias_correction=True)``.
_RMS_WITH_COUNT = getattr(optax, "ScaleByRmsWithCountState", None)
if _RMS_WITH_COUNT is None:
    from optax._src.transform import ScaleByRmsWithCountState as _RMS_WITH_COUNT
_ADAPTIVE_STATES = (optax.ScaleByAdamState, optax.ScaleByRmsState, _RMS_WITH_COUNT)


def search_state(node, types: tuple, hyperparams: dict | None = None):
    """Depth-first search of an optax state for the first node of one of ``types`` (through chains,
    ``inject_hyperparams`` states, lists, dicts); ``(state, enclosing hyperparams)`` or ``None``."""
    hyperparams = {} if hyperparams is None else hyperparams
    if isinstance(node, types):
        return node, hyperparams
    inner_hp = getattr(node, "hyperparams", None)
    if isinstance(node, tuple) and isinstance(inner_hp, dict):  # optax.inject_hyperparams
        hyperparams = inner_hp
    if isinstance(node, dict):
        children = list(node.values())
    elif isinstance(node, (tuple, list)):
        children = list(node)
    else:
        return None
    for child in children:
        found = search_state(child, types, hyperparams)
        if found is not None:
            return found
    return None


def find_adaptive_state(opt_state: PyTree):
    """Find the second-moment state of Adam/AdamW/RMSprop inside any optax state pytree.

    Searches depth first through tuples (``optax.chain``), NamedTuples (including
    ``optax.inject_hyperparams`` states), lists and dicts, for the first ``ScaleByAdamState``
    (``count, mu, nu``: adam, adamw, nadam, ...), ``ScaleByRmsState`` (``nu``: rmsprop) or
    ``ScaleByRmsWithCountState`` (``count, nu``: rmsprop with ``bias_correction=True``).

    Args:
      opt_state: an optax optimizer state.

    Returns:
      ``(state, hyperparams)``: the state found and the ``hyperparams`` dict of the nearest enclosing
      ``inject_hyperparams`` state (``{}`` if none).

    Raises:
      ValueError: if no such state exists (for example plain SGD).
    """
    found = search_state(opt_state, _ADAPTIVE_STATES)
    if found is None:
        names = sorted({type(x).__name__ for x in jax.tree.leaves(
            opt_state, is_leaf=lambda x: isinstance(x, tuple) and hasattr(x, "_fields"))})
        raise ValueError("no ScaleByAdamState / ScaleByRmsState in the optimizer state (found "
                         f"{names}); preconditioned sharpness needs adam, adamw or rmsprop.")
    return found


def _pick(explicit, hyperparams, name, default):
    if explicit is not None:
        return explicit
    return hyperparams.get(name, default)


def adaptive_preconditioner(opt_state: PyTree, *, b1=None, b2=None, eps=None, eps_root=None,
                            convention: str = "locuslab") -> PyTree:
    r"""Diagonal preconditioner :math:`P_t` of Adam/AdamW/RMSprop, read from an optax state.

    Adam (``ScaleByAdamState``, :math:`t` = ``count``):
    :math:`P_t = c_t\,(\sqrt{\nu_t/(1-\beta_2^t) + \epsilon_{root}} + \epsilon)` with
    :math:`c_t = 1-\beta_1^t` for ``convention="locuslab"`` and :math:`c_t = 1` for ``"init2winit"``
    (module docstring). Undefined before the first update (``count == 0``).

    RMSprop (``ScaleByRmsState``): :math:`P = \sqrt{\nu + \epsilon_{root}} + \epsilon`; with
    ``bias_correction=True`` (``ScaleByRmsWithCountState``) :math:`\nu` is divided by
    :math:`1-\beta_2^t`, ``b2`` being rmsprop's ``decay``. No momentum factor. optax's rmsprop default
    ``eps_in_sqrt=True`` puts its ``eps`` inside the root: its ``eps`` is ``eps_root`` here.

    Hyperparameters not given are read from an enclosing ``optax.inject_hyperparams`` state (names
    ``b1, b2, eps, eps_root``; rmsprop's ``decay`` and ``eps`` map to ``b2`` and ``eps_root``), else set
    to optax's defaults (Adam: 0.9, 0.999, 1e-8, 0; RMSprop: decay 0.9, ``eps_root`` 1e-8, ``eps`` 0).
    **They must match the optimizer**; pass them explicitly unless they are injected.

    Args:
      opt_state: optax state containing one of the states above (anywhere in a chain).
      b1: Adam's first-moment decay (for the locuslab factor).
      b2: second-moment decay (for the bias correction of :math:`\nu`).
      eps: added outside the square root.
      eps_root: added inside the square root.
      convention: ``"locuslab"`` (default) or ``"init2winit"``; ignored for RMSprop.

    Returns:
      A pytree shaped like the parameters holding the diagonal of :math:`P_t` (positive).
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; valid: {', '.join(CONVENTIONS)}.")
    state, hp = find_adaptive_state(opt_state)
    if isinstance(state, optax.ScaleByAdamState):
        b1 = _pick(b1, hp, "b1", 0.9)
        b2 = _pick(b2, hp, "b2", 0.999)
        eps = _pick(eps, hp, "eps", 1e-8)
        eps_root = _pick(eps_root, hp, "eps_root", 0.0)
        t = state.count
        factor = 1 - b1 ** t if convention == "locuslab" else 1.0
        return jax.tree.map(
            lambda nu: (factor * (jnp.sqrt(nu / (1 - b2 ** t) + eps_root) + eps)).astype(nu.dtype),
            state.nu)
    eps_root = eps_root if eps_root is not None else hp.get("eps", 1e-8)
    eps = 0.0 if eps is None else eps
    if isinstance(state, _RMS_WITH_COUNT):
        decay = b2 if b2 is not None else hp.get("decay", 0.9)
        correction = 1 - decay ** state.count
    else:
        correction = 1.0
    return jax.tree.map(lambda nu: (jnp.sqrt(nu / correction + eps_root) + eps).astype(nu.dtype),
                        state.nu)


@self_compiling(static=("k", "method", "max_iters"))
def preconditioned_sharpness(loss_fn: Callable[[PyTree], jax.Array], params: PyTree,
                             precond: PyTree, k: int = 1, *, key: jax.Array,
                             method: str = "lanczos", tol: float = 1e-5, max_iters: int = 500,
                             init: PyTree | None = None) -> TopKResult:
    r"""Top-k eigenvalues of :math:`P^{-1}\nabla^2L(\theta)` for a positive diagonal :math:`P`.

    Computed as the eigenvalues of the symmetric :math:`P^{-1/2}\nabla^2L\,P^{-1/2}` (same spectrum), by
    :func:`~dynamics.curvature.topk.eigsh_top_k` with its relative tolerance. Compare ``values[0]``
    with :func:`adam_threshold` (:math:`38/\eta` at :math:`\beta_1 = 0.9`).

    Args:
      loss_fn: ``loss_fn(params) -> scalar``.
      params: the point at which the Hessian is taken (a pytree).
      precond: diagonal of :math:`P`, a pytree shaped like ``params`` (e.g. from
        :func:`adaptive_preconditioner`).
      k: number of eigenpairs.
      key: PRNG key for the random start.
      method: ``"lanczos"``, ``"power"`` or ``"lobpcg"``.
      tol: relative residual tolerance.
      max_iters: maximum number of Hessian-vector products.
      init: warm start (previous ``vectors``).

    Returns:
      ``TopKResult``. ``vectors`` are eigenvectors :math:`u_i` of :math:`P^{-1/2}HP^{-1/2}`
      (orthonormal, reusable as ``init``); those of :math:`P^{-1}H` are :math:`P^{-1/2}u_i`.
    """
    matvec, flat, unravel = flat_hvp(loss_fn, params)
    d = jax.lax.rsqrt(ravel_pytree(precond)[0].astype(flat.dtype))

    def pmatvec(u):
        return d * matvec(d * u)

    V0 = initial_block(params, k, key, init)
    res = eigsh_top_k(pmatvec, V0, method=method, tol=tol, max_iters=max_iters)
    return res._replace(vectors=jax.vmap(unravel)(res.vectors))


def gd_threshold(lr):
    r"""Stability threshold :math:`2/\eta` of gradient descent on the sharpness :math:`\lambda_{\max}(H)`.

    Args:
      lr: learning rate :math:`\eta`.

    Returns:
      :math:`2/\eta`.
    """
    return 2.0 / lr


def heavy_ball_threshold(lr, momentum):
    r"""Threshold :math:`(2+2\beta)/\eta` of heavy-ball momentum (PyTorch SGD, ``optax.sgd(momentum=β)``).

    Update :math:`v \leftarrow \beta v + g,\; w \leftarrow w - \eta v`; on a quadratic the characteristic
    polynomial :math:`z^2 - (1+\beta-\eta\lambda)z + \beta` has a root at :math:`-1` when
    :math:`\eta\lambda = 2 + 2\beta`.

    Args:
      lr: learning rate :math:`\eta`.
      momentum: :math:`\beta`.

    Returns:
      :math:`(2+2\beta)/\eta`.
    """
    return (2.0 + 2.0 * momentum) / lr


def nesterov_threshold(lr, momentum):
    r"""Threshold :math:`(2+2\beta)/((1+2\beta)\eta)` of Nesterov momentum (PyTorch / ``optax.sgd(nesterov=True)``).

    Update :math:`v \leftarrow \beta v + g,\; w \leftarrow w - \eta(g + \beta v)`.

    Args:
      lr: learning rate :math:`\eta`.
      momentum: :math:`\beta`.

    Returns:
      :math:`(2+2\beta)/((1+2\beta)\eta)`.
    """
    return (2.0 + 2.0 * momentum) / ((1.0 + 2.0 * momentum) * lr)


def adam_threshold(lr, b1=0.9):
    r"""Threshold :math:`(2+2\beta_1)/((1-\beta_1)\eta)` of Adam on :math:`\lambda_{\max}(P^{-1}H)`.

    EMA momentum :math:`m \leftarrow \beta_1 m + (1-\beta_1)g,\; w \leftarrow w - \eta P^{-1}m` with a
    frozen :math:`P`; :math:`38/\eta` at :math:`\beta_1 = 0.9`, and :math:`2/\eta` for RMSprop
    (:math:`\beta_1 = 0`). In the central-flows convention (:math:`\eta` folded into :math:`P`) RMSprop's
    threshold reads 2.

    Args:
      lr: learning rate :math:`\eta`.
      b1: first-moment decay :math:`\beta_1`.

    Returns:
      :math:`(2+2\beta_1)/((1-\beta_1)\eta)`.
    """
    return (2.0 + 2.0 * b1) / ((1.0 - b1) * lr)
