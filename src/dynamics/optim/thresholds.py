r"""Stability thresholds of optimizers on a quadratic: one table, derived once.

**Method** (papers/optimizers.md §3.1). Write the update as :math:`x_{t+1} = x_t - \eta P^{-1}u_t` with
:math:`u` a linear filter of past gradients, :math:`U(z) = K(z)G(z)`, and freeze the diagonal
preconditioner :math:`P`. On a quadratic with Hessian :math:`H` every eigenvector of
:math:`P^{-1/2}HP^{-1/2}` decouples; with :math:`a = \eta\lambda(P^{-1}H)` the mode obeys
:math:`(z-1)X(z) = -aK(z)X(z)`. For every row below the first unit-circle crossing as :math:`a` grows is
the period-2 flip :math:`z=-1`, so the mode is stable iff :math:`a < 2/K(-1)`: the threshold on
:math:`\lambda_{\max}(P^{-1}H)` (``metric="precond_sharpness"``; ``"sharpness"`` = :math:`\lambda_{\max}(H)`
when :math:`P = I`) is :math:`2/(\eta K(-1))`. Decoupled weight decay :math:`\omega` (``adamw``:
:math:`\Delta x = -\eta(P^{-1}u + \omega x)`) turns the flip condition into
:math:`aK(-1) = 2 - \eta\omega`; coupled L2 decay (``gd``) adds :math:`\omega` to every curvature, so the
threshold on :math:`\lambda_{\max}(H)` of the loss is :math:`2/\eta - \omega`.

Rows (η = learning rate; β heavy-ball/Nesterov momentum, β1 Adam's first-moment decay):

* ``gd``, ``sgd``: K = 1, threshold 2/η on λ_max(H) (``gd``'s coupled L2 decay ω: 2/η − ω);
* ``momentum`` / ``sgd(momentum=β)`` (m = βm + g, Δ = −ηm): K(−1) = 1/(1+β), (2+2β)/η;
* ``nesterov`` / ``sgd(momentum=β, nesterov=True)`` (optax ``trace``: Δ = −η(g + β m_new)):
  K(−1) = (1+2β)/(1+β), (2+2β)/((1+2β)η) (1.357/η at β = 0.9; the same as PyTorch's Nesterov SGD);
* ``adam``, ``adamw``, ``amsgrad``, ``adabelief``, ``yogi``, ``radam``, ``adamax``, ``adamaxw``
  (m = β1 m + (1−β1) g): K(−1) = (1−β1)/(1+β1), (2+2β1)/((1−β1)η) on λ_max(P⁻¹H) (38/η at β1 = 0.9);
  decoupled weight decay ω: (2−ηω)(1+β1)/((1−β1)η);
* ``nadam``, ``nadamw`` and ``nesterov=True`` variants (u = β1 m_new + (1−β1) g):
  K(−1) = (1−β1)(1+2β1)/(1+β1), (2+2β1)/((1−β1)(1+2β1)η) (13.57/η at β1 = 0.9);
* ``rmsprop``, ``adagrad``: K = 1, 2/η on λ_max(P⁻¹H) (central flows: η·λ_max(P⁻¹H) → 2); rmsprop with
  ``momentum=β`` (the trace applied after the learning rate): (2+2β)/η, Nesterov as above;
* ``normalized_gd``: GD with η_t = η/‖g‖: 2/η_t = 2‖g‖/η per logged row (``columns["grad_norm"]``).

The crossing at :math:`z=-1` is checked numerically (companion-matrix spectral radius) in
``tests/test_thresholds.py``, and each row is tested on the real optax update: on a diagonal quadratic
with the preconditioner frozen (second-moment decay :math:`1-10^{-6}`, step counter at :math:`10^9` so
that every bias correction is 1 and RAdam's rectification :math:`r_t = 1`, second moments preset), a
curvature 3 % below the predicted threshold converges and 3 % above diverges.

**Preconditioners and the bias-correction convention.** ``Stability.preconditioner(opt_state,
hparams)`` reads the diagonal :math:`P` from the optax state (found by type anywhere in it, also under
``inject_hyperparams``), *as stored* (the next step will use :math:`\nu` updated once more). The
threshold is that of the recurrence on the **raw** EMA :math:`m_t`, so the Adam family uses the
``locuslab`` convention :math:`P_t = (1-\beta_1^t)\,(\sqrt{\hat\nu_t+\epsilon_{root}}+\epsilon)`,
:math:`\hat\nu_t = \nu_t/(1-\beta_2^t)` (folds :math:`\hat m_t = m_t/(1-\beta_1^t)` into :math:`P`); the
``init2winit`` convention (without :math:`1-\beta_1^t`) agrees once :math:`\beta_1^t \approx 0`. Per
optimizer: amsgrad uses ``nu_max`` (already bias-corrected); adabelief :math:`\sqrt{\hat s}+\epsilon` with
:math:`s` the EMA of :math:`(g-m)^2` (its ``eps_root`` is added inside :math:`s`); yogi as Adam (its
``eps`` default is 1e-3); radam divides by the rectification :math:`r_t` once :math:`\rho_t \ge`
``threshold`` and is unpreconditioned (:math:`P = 1-\beta_1^t`) before; adamax :math:`P = \nu` (the
infinity norm, no bias correction, no square root); rmsprop :math:`\sqrt{\nu+\epsilon}` (``eps_in_sqrt``,
optax's default) or :math:`\sqrt\nu+\epsilon`, :math:`\nu-\mu^2` when ``centered``, :math:`\nu/(1-d^t)` with
``bias_correction``; adagrad :math:`\sqrt{\sum g^2+\epsilon}`.

**Unknown.** Sign descent (sign_sgd, signum), Lion, Muon, rprop: no threshold of this form (their steps
have a fixed length, so a quadratic does not diverge; arXiv 2603.05002's generalized sharpness is not
derived and tested here); SAM, schedule-free, Sophia, lookahead and the parameter-free methods are not
tabled. :func:`stability_of` returns ``None`` for them and :func:`not_applicable` says so in one line.
"""

from collections.abc import Callable
import functools
import inspect
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from dynamics.curvature.preconditioned import (adam_threshold, gd_threshold, heavy_ball_threshold,
                                               nesterov_threshold, search_state)

PyTree = object
METRICS = ("sharpness", "precond_sharpness")


class Stability(NamedTuple):
    """The curvature that equilibrates at the edge of stability and its threshold, for one optimizer.

    Attributes:
      metric: ``"sharpness"`` (:math:`\\lambda_{\\max}(H)`) or ``"precond_sharpness"``
        (:math:`\\lambda_{\\max}(P^{-1}H)` with ``preconditioner``).
      threshold: ``threshold(hparams, columns)``: hyperparameters by optax argument name (missing ones
        take the optax defaults; static flags such as ``nesterov`` included) and logged columns
        (``grad_norm`` for normalized GD); returns a number or one value per row.
      label: the formula, for figures (the general form; see :meth:`label_for`).
      preconditioner: ``preconditioner(opt_state, hparams) -> P`` (diagonal, shaped like the params)
        for ``precond_sharpness``; ``None`` for ``sharpness``.
      derivation: one line: the filter's :math:`K(-1)` and the conditions.
      label_fn: optional ``label_fn(hparams) -> str`` when the formula depends on flags.
    """

    metric: str
    threshold: Callable[[dict, dict], object]
    label: str
    preconditioner: Callable[[PyTree, dict], PyTree] | None = None
    derivation: str = ""
    label_fn: Callable[[dict], str] | None = None

    def label_for(self, hparams: dict) -> str:
        """The formula for these hyperparameters (e.g. sgd with or without momentum)."""
        return self.label_fn(hparams) if self.label_fn is not None else self.label


# ------------------------------------------------------------------ hyperparameter defaults
def _factory(name: str):
    from dynamics.optim.registry import OPTIMIZERS

    if name in OPTIMIZERS:
        spec = OPTIMIZERS.get(name)
        return spec.factory, dict(spec.static)
    for module in (optax, optax.contrib):
        if hasattr(module, name):
            return getattr(module, name), {}
    raise KeyError(name)


@functools.cache
def defaults_of(name: str) -> dict:
    """optax's defaults of optimizer ``name`` (registry names: their factory and static flags)."""
    factory, static = _factory(name)
    params = inspect.signature(factory).parameters
    out = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    out.update(static)
    return out


def _merged(name: str, hparams: dict | None) -> dict:
    out = dict(defaults_of(name))
    out.update({k: v for k, v in (hparams or {}).items() if v is not None})
    return out


# ------------------------------------------------------------------ threshold formulas
def _momentum_threshold(lr, momentum, nesterov):
    if momentum is None:
        return gd_threshold(lr)
    if nesterov:
        return nesterov_threshold(lr, momentum)
    return heavy_ball_threshold(lr, momentum)


def ema_threshold(lr, b1, nesterov=False, weight_decay=0.0):
    r""":math:`(2-\eta\omega)/(\eta K(-1))` for EMA momentum :math:`\beta_1` (Adam family).

    :math:`K(-1) = (1-\beta_1)/(1+\beta_1)`, or :math:`(1-\beta_1)(1+2\beta_1)/(1+\beta_1)` with Nesterov
    (NAdam: :math:`u = \beta_1 m_{new} + (1-\beta_1)g`); :math:`\omega` is decoupled weight decay.
    """
    k = (1.0 - b1) / (1.0 + b1)
    if nesterov:
        k = k * (1.0 + 2.0 * b1)
    return (2.0 - lr * weight_decay) / (k * lr)


def _lr(h):
    return h["learning_rate"]


def _wd(h):
    w = h.get("weight_decay")
    return 0.0 if w is None else w


# ------------------------------------------------------------------ preconditioner readers
def find_state(opt_state: PyTree, types: tuple) -> tuple[PyTree, dict]:
    """First state of one of ``types`` in ``opt_state`` (depth first through chains, inject states,
    lists, dicts) and the ``hyperparams`` of the nearest enclosing ``inject_hyperparams`` state."""
    found = search_state(opt_state, types)
    if found is None:
        raise ValueError(f"no {' / '.join(t.__name__ for t in types)} in the optimizer state.")
    return found


def _hp(name, state_hp, hparams):
    h = dict(defaults_of(name))
    h.update({k: v for k, v in state_hp.items()})
    h.update({k: v for k, v in (hparams or {}).items() if v is not None})
    return h


def _bias(b, t):
    return 1.0 - b ** t


def _adam_like(name, state_type, convention="locuslab"):
    """P = c_t (√(ν̂ + eps_root) + eps) from a state with ``count`` and ``nu`` (or ``nu_max``)."""

    def read(opt_state, hparams=None):
        state, shp = find_state(opt_state, (state_type,))
        h = _hp(name, shp, hparams)
        t = state.count
        c = _bias(h["b1"], t) if convention == "locuslab" else 1.0
        eps_root = h.get("eps_root")
        eps_root = 0.0 if eps_root is None else eps_root  # may be traced (injected): no truth test
        if state_type is optax.ScaleByAmsgradState:
            nu_hat = state.nu_max  # bias-corrected before the max
        elif state_type is optax.ScaleByBeliefState:
            nu_hat = jax.tree.map(lambda v: v / _bias(h["b2"], t), state.nu)
            eps_root = 0.0  # added into s every step
        else:
            nu_hat = jax.tree.map(lambda v: v / _bias(h["b2"], t), state.nu)
        if name == "radam":
            b2 = h["b2"]
            ro_inf = 2.0 / (1.0 - b2) - 1.0
            b2t = b2 ** t
            ro = ro_inf - 2.0 * t * b2t / (1.0 - b2t)
            r = jnp.sqrt((ro - 4.0) * (ro - 2.0) * ro_inf / ((ro_inf - 4.0) * (ro_inf - 2.0) * ro))
            on = ro >= h["threshold"]
            return jax.tree.map(
                lambda v: (c * jnp.where(on, (jnp.sqrt(v + eps_root) + h["eps"]) / jnp.where(
                    on, r, 1.0), 1.0)).astype(v.dtype), nu_hat)
        return jax.tree.map(lambda v: (c * (jnp.sqrt(v + eps_root) + h["eps"])).astype(v.dtype),
                            nu_hat)

    return read


def _adamax_precond(name):
    def read(opt_state, hparams=None):
        state, shp = find_state(opt_state, (optax.ScaleByAdamState,))
        h = _hp(name, shp, hparams)
        c = _bias(h["b1"], state.count)
        return jax.tree.map(lambda v: (c * v).astype(v.dtype), state.nu)

    return read


_RMS = tuple(getattr(optax, n, None) or getattr(__import__("optax._src.transform", fromlist=[n]), n)
             for n in ("ScaleByRmsState", "ScaleByRStdDevState"))
_RMS_COUNT = tuple(getattr(__import__("optax._src.transform", fromlist=[n]), n)
                   for n in ("ScaleByRmsWithCountState", "ScaleByRStdDevWithCountState"))


def _rmsprop_precond(name):
    def read(opt_state, hparams=None):
        state, shp = find_state(opt_state, _RMS + _RMS_COUNT)
        h = _hp(name, shp, hparams)
        decay = h.get("decay", h.get("b2"))
        nu = state.nu
        if isinstance(state, _RMS_COUNT):
            nu = jax.tree.map(lambda v: v / _bias(decay, state.count), nu)
            mu = getattr(state, "mu", None)
            if mu is not None:
                mu = jax.tree.map(lambda m: m / _bias(decay, state.count), mu)
        else:
            mu = getattr(state, "mu", None)
        if mu is not None:  # centered
            nu = jax.tree.map(lambda v, m: v - m * m, nu, mu)
        eps = h.get("eps", 1e-8)
        if h.get("eps_in_sqrt", True):
            return jax.tree.map(lambda v: jnp.sqrt(v + eps).astype(v.dtype), nu)
        return jax.tree.map(lambda v: (jnp.sqrt(v) + eps).astype(v.dtype), nu)

    return read


def _adagrad_precond(opt_state, hparams=None):
    state, shp = find_state(opt_state, (optax.ScaleByRssState,))
    h = _hp("adagrad", shp, hparams)
    return jax.tree.map(lambda s: jnp.sqrt(s + h["eps"]).astype(s.dtype), state.sum_of_squares)


# ------------------------------------------------------------------ the table
_EMA = "K(−1) = (1−β1)/(1+β1): EMA momentum m = β1 m + (1−β1) g, P frozen"
_NADAM = "K(−1) = (1−β1)(1+2β1)/(1+β1): u = β1 m_new + (1−β1) g, P frozen"
_ADAM_LABEL = "(2+2β1)/((1−β1)η)"
_NADAM_LABEL = "(2+2β1)/((1−β1)(1+2β1)η)"


def _ema_entry(name, precond, *, decoupled_wd=False, nesterov_default=False, extra=""):
    def threshold(hparams, columns=None):
        h = _merged(name, hparams)
        nesterov = bool(h.get("nesterov", nesterov_default))
        wd = _wd(h) if decoupled_wd else 0.0
        return ema_threshold(_lr(h), h["b1"], nesterov, wd)

    def label_fn(hparams):
        h = _merged(name, hparams)
        base = _NADAM_LABEL if h.get("nesterov", nesterov_default) else _ADAM_LABEL
        if decoupled_wd and _wd(h):
            base = base.replace("(2+2β1)", "(2−ηλ)(1+β1)")
        return base

    label = _NADAM_LABEL if nesterov_default else _ADAM_LABEL
    if decoupled_wd:
        label = label.replace("(2+2β1)", "(2−ηλ)(1+β1)")
    derivation = (_NADAM if nesterov_default else _EMA) + (
        "; decoupled weight decay λ: (2 − ηλ)/K(−1)" if decoupled_wd else "") + extra
    return Stability("precond_sharpness", threshold, label, precond, derivation, label_fn)


def _sgd_like(name, fixed=None):
    def threshold(hparams, columns=None):
        h = _merged(name, hparams)
        if fixed == "gd":
            return gd_threshold(_lr(h)) - _wd(h)
        return _momentum_threshold(_lr(h), h.get("momentum"), bool(h.get("nesterov", False)))

    def label_fn(hparams):
        h = _merged(name, hparams)
        if fixed == "gd":
            return "2/η − λ" if _wd(h) else "2/η"
        if h.get("momentum") is None:
            return "2/η"
        return "(2+2β)/((1+2β)η)" if h.get("nesterov") else "(2+2β)/η"

    labels = {"gd": "2/η", "momentum": "(2+2β)/η", "nesterov": "(2+2β)/((1+2β)η)"}
    label = labels.get(name, "2/η; (2+2β)/η with momentum; (2+2β)/((1+2β)η) with Nesterov")
    derivation = {"gd": "K = 1; coupled L2 weight decay λ adds λ to the curvature: 2/η − λ",
                  "momentum": "K(−1) = 1/(1+β): heavy ball m = βm + g, Δ = −ηm",
                  "nesterov": "K(−1) = (1+2β)/(1+β): optax trace(nesterov), Δ = −η(g + β m_new)"
                  }.get(name, "K(−1) = 1, 1/(1+β) heavy ball, (1+2β)/(1+β) Nesterov (optax trace)")
    return Stability("sharpness", threshold, label, None, derivation, label_fn)


def _rms_entry(name, precond, derivation):
    def threshold(hparams, columns=None):
        h = _merged(name, hparams)
        return _momentum_threshold(_lr(h), h.get("momentum"), bool(h.get("nesterov", False)))

    def label_fn(hparams):
        h = _merged(name, hparams)
        if h.get("momentum") is None:
            return "2/η"
        return "(2+2β)/((1+2β)η)" if h.get("nesterov") else "(2+2β)/η"

    return Stability("precond_sharpness", threshold, "2/η", precond, derivation, label_fn)


def _normalized_gd_threshold(hparams, columns):
    h = _merged("normalized_gd", hparams)
    return 2.0 * columns["grad_norm"] / _lr(h)


STABILITY: dict[str, Stability] = {
    "gd": _sgd_like("gd", fixed="gd"),
    "sgd": _sgd_like("sgd"),
    "momentum": _sgd_like("momentum"),
    "nesterov": _sgd_like("nesterov"),
    "normalized_gd": Stability("sharpness", _normalized_gd_threshold, "2/η_t", None,
                               "GD with the step η_t = η/‖∇L(θ_t)‖: 2/η_t = 2‖g‖/η per logged row "
                               "(needs columns['grad_norm'])"),
    "adam": _ema_entry("adam", _adam_like("adam", optax.ScaleByAdamState)),
    "adamw": _ema_entry("adamw", _adam_like("adamw", optax.ScaleByAdamState), decoupled_wd=True),
    "nadam": _ema_entry("nadam", _adam_like("nadam", optax.ScaleByAdamState),
                        nesterov_default=True),
    "nadamw": _ema_entry("nadamw", _adam_like("nadamw", optax.ScaleByAdamState),
                         decoupled_wd=True, nesterov_default=True),
    "amsgrad": _ema_entry("amsgrad", _adam_like("amsgrad", optax.ScaleByAmsgradState),
                          extra="; P from nu_max"),
    "adabelief": _ema_entry("adabelief", _adam_like("adabelief", optax.ScaleByBeliefState),
                            extra="; P = √ŝ + eps, s = EMA of (g − m)²"),
    "yogi": _ema_entry("yogi", _adam_like("yogi", optax.ScaleByAdamState),
                       extra="; yogi's additive ν update frozen"),
    "radam": _ema_entry("radam", _adam_like("radam", optax.ScaleByAdamState),
                        extra="; P = (√ν̂ + eps)/r_t after the warm-up (ρ_t ≥ threshold), r_t → 1"),
    "adamax": _ema_entry("adamax", _adamax_precond("adamax"), extra="; P = ν (infinity norm)"),
    "adamaxw": _ema_entry("adamaxw", _adamax_precond("adamaxw"), decoupled_wd=True,
                          extra="; P = ν (infinity norm)"),
    "rmsprop": _rms_entry("rmsprop", _rmsprop_precond("rmsprop"),
                          "K = 1 on λ(P⁻¹H) (central flows: effective sharpness η λ(P⁻¹H) → 2); "
                          "momentum β (trace after the lr): heavy ball / Nesterov"),
    "adagrad": _rms_entry("adagrad", _adagrad_precond, "K = 1, P = √(Σg² + eps) frozen"),
}

UNKNOWN: dict[str, str] = {
    "sign_sgd": "fixed-length sign steps: a quadratic oscillates within ~η instead of diverging; "
                "the ℓ∞ generalized sharpness (arXiv 2603.05002) is not derived/tested here",
    "signum": "sign of a momentum EMA: fixed-length steps, no linear threshold",
    "lion": "sign of an interpolated momentum: fixed-length steps, nonlinear on a quadratic",
    "muon": "orthogonalized (spectral-norm) steps of fixed length; threshold not derived",
    "rprop": "sign-based per-coordinate step sizes",
    "sam": "two-gradient step; its edge depends on ‖∇L‖ (arXiv 2309.12488), not tabled",
    "sophia": "clipped Hessian-diagonal steps; (2+2β1)/((1−β1)η) holds only on unclipped coordinates",
    "schedule_free_sgd": "averaging weight c_t moves the bound over time; not tested",
    "schedule_free_adamw": "averaging weight c_t moves the bound over time; not tested",
    "lbfgs": "line search: no fixed step",
    "polyak_sgd": "adaptive step from the loss value: no fixed η",
}


def stability_of(name: str) -> Stability | None:
    """The stability entry of optimizer ``name``, or ``None`` when no threshold is known."""
    return STABILITY.get(name)


def not_applicable(name: str) -> str | None:
    """``"not applicable: no known threshold for <name>"`` when the table has no entry, else ``None``.

    Cheap (a dictionary lookup); call it before compiling anything.
    """
    if name in STABILITY:
        return None
    return f"not applicable: no known threshold for {name}"


def threshold_names() -> list[str]:
    """Optimizer names with a known threshold."""
    return sorted(STABILITY)
