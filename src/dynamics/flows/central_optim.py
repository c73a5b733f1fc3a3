r"""GD, RMSProp and scalar RMSProp as preconditioned GD, for central flows and their discrete runs.

Convention of the central-flows reference (η inside the preconditioner): one step is
:math:`w_{t+1} = w_t - P_t^{-1}\nabla L(w_t)` with a diagonal :math:`P_t` (a flat vector ``p``):

* ``gd``: :math:`P = I/\eta`;
* ``rmsprop``: :math:`\nu_{t+1} = \beta_2\nu_t + (1-\beta_2)g_t^{\odot2}`,
  :math:`P_t = (\sqrt{\hat\nu_{t+1}} + \epsilon)/\eta` (``eps_in_sqrt=False``, the reference's and
  PyTorch's) or :math:`\sqrt{\hat\nu_{t+1} + \epsilon}/\eta` (``eps_in_sqrt=True``, optax's default);
  :math:`\hat\nu = \nu/(1-\beta_2^{t})` with bias correction (count ``t = 1`` at the first step), else
  :math:`\hat\nu = \nu`;
* ``scalar_rmsprop``: the same with the scalar :math:`\|g_t\|^2` in place of :math:`g_t^{\odot 2}`.

The discrete processes are the optax transformations :func:`discrete_transform` (``optax.sgd``,
``optax.rmsprop`` with ``decay=b2``, ``eps``, ``eps_in_sqrt``, ``bias_correction``; scalar RMSProp is
:func:`scale_by_scalar_rms` chained with the learning rate). The state ODE of the flows is
:math:`d\nu/dt = \frac{1-\beta_2}{\beta_2}(q - \nu)` with :math:`q = g^{\odot2}` (stable flow) or
:math:`g^{\odot2} + \mathrm{diag}(H\Sigma H)` (central flow); the :math:`1/\beta_2` makes the Euler
discretisation match the update's use of :math:`\nu_{t+1}` (paper footnote, reference code). The bias
correction counter advances at rate 1 per step (the reference code divides it by β2 too, which its note
flags as probably unintended).
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

KINDS = ("gd", "rmsprop", "scalar_rmsprop")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FlowOptimizer:
    """A preconditioned-GD optimizer (a pytree: ``lr``, ``b2``, ``eps`` are traced leaves).

    Attributes:
      kind: ``"gd"``, ``"rmsprop"`` or ``"scalar_rmsprop"``.
      lr: learning rate η. b2: β2 of the second-moment EMA. eps: ε.
      bias_correction: divide ν by 1 − β2^t. eps_in_sqrt: ε inside the square root (optax's default).
    """

    lr: float
    b2: float = 0.99
    eps: float = 0.0
    kind: str = dataclasses.field(default="gd", metadata=dict(static=True))
    bias_correction: bool = dataclasses.field(default=False, metadata=dict(static=True))
    eps_in_sqrt: bool = dataclasses.field(default=False, metadata=dict(static=True))

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown optimizer kind {self.kind!r}; valid: {', '.join(KINDS)}.")


def gd(lr) -> FlowOptimizer:
    """Gradient descent with step η: :math:`P = I/\\eta`."""
    return FlowOptimizer(lr, kind="gd")


def rmsprop(lr, b2=0.99, eps=0.0, *, bias_correction=False, eps_in_sqrt=False) -> FlowOptimizer:
    """RMSProp with a per-coordinate second moment (see the module docstring)."""
    return FlowOptimizer(lr, b2, eps, "rmsprop", bias_correction, eps_in_sqrt)


def scalar_rmsprop(lr, b2=0.99, eps=0.0, *, bias_correction=False, eps_in_sqrt=False) -> FlowOptimizer:
    """RMSProp with one scalar second moment of ‖g‖²."""
    return FlowOptimizer(lr, b2, eps, "scalar_rmsprop", bias_correction, eps_in_sqrt)


class ScaleByScalarRmsState(NamedTuple):
    count: jax.Array
    nu: jax.Array


def scale_by_scalar_rms(decay, eps=0.0, *, eps_in_sqrt=False,
                        bias_correction=False) -> optax.GradientTransformation:
    r"""optax transformation :math:`g \mapsto g/(\sqrt{\hat\nu}+\epsilon)`, :math:`\nu \leftarrow \beta\nu +
    (1-\beta)\|g\|^2` (global squared norm), state updated before use."""

    def init(params):
        dtype = jax.tree.leaves(params)[0].dtype
        return ScaleByScalarRmsState(jnp.zeros([], jnp.int32), jnp.zeros([], dtype))

    def update(updates, state, params=None):
        del params
        nu = decay * state.nu + (1 - decay) * optax.tree.norm(updates, squared=True)
        count = state.count + 1
        nu_hat = nu / (1 - decay**count) if bias_correction else nu
        denom = jnp.sqrt(nu_hat + eps) if eps_in_sqrt else jnp.sqrt(nu_hat) + eps
        return jax.tree.map(lambda g: g / denom, updates), ScaleByScalarRmsState(count, nu)

    return optax.GradientTransformation(init, update)


def discrete_transform(opt: FlowOptimizer) -> optax.GradientTransformation:
    """The optax transformation of the discrete process (its state's first element holds ``nu``)."""
    if opt.kind == "gd":
        return optax.sgd(opt.lr)
    if opt.kind == "rmsprop":
        return optax.rmsprop(opt.lr, decay=opt.b2, eps=opt.eps, eps_in_sqrt=opt.eps_in_sqrt,
                             bias_correction=opt.bias_correction)
    return optax.chain(scale_by_scalar_rms(opt.b2, opt.eps, eps_in_sqrt=opt.eps_in_sqrt,
                                           bias_correction=opt.bias_correction),
                       optax.scale_by_learning_rate(opt.lr))


class FlowState(NamedTuple):
    """Optimizer state along a flow: ``nu`` (``(n,)``, scalar, or a dummy 0 for GD) and ``count``."""

    nu: jax.Array
    count: jax.Array


def second_moment_target(opt: FlowOptimizer, a: jax.Array, b: jax.Array) -> jax.Array:
    """The EMA's input for the pair ``(a, b)``: ``a ⊙ b`` (rmsprop), ``⟨a, b⟩`` (scalar), 0 (gd)."""
    if opt.kind == "rmsprop":
        return a * b
    if opt.kind == "scalar_rmsprop":
        return jnp.vdot(a, b)
    return jnp.zeros((), a.dtype)


def init_flow_state(opt: FlowOptimizer, g0: jax.Array, nu: jax.Array | None = None,
                    count=0) -> FlowState:
    """State after one update with ``g0`` from ``(nu, count)`` (default: ν = 0, count 0), matching the
    discrete process, whose step ``t`` uses ν_{t+1}."""
    target = second_moment_target(opt, g0, g0)
    nu = jnp.zeros_like(target) if nu is None else nu
    return FlowState(opt.b2 * nu + (1 - opt.b2) * target, jnp.asarray(count + 1, g0.dtype))


def preconditioner(opt: FlowOptimizer, state: FlowState, n: int, dtype) -> jax.Array:
    """The diagonal of :math:`P` as a flat ``(n,)`` vector."""
    if opt.kind == "gd":
        return jnp.full((n,), 1 / opt.lr, dtype)
    nu = state.nu / (1 - opt.b2**state.count) if opt.bias_correction else state.nu
    denom = jnp.sqrt(nu + opt.eps) if opt.eps_in_sqrt else jnp.sqrt(nu) + opt.eps
    return jnp.broadcast_to(denom / opt.lr, (n,)).astype(dtype)


def state_rate(opt: FlowOptimizer, state: FlowState, target: jax.Array) -> FlowState:
    """:math:`(d\\nu/dt, d\\,\\mathrm{count}/dt) = (\\frac{1-\\beta_2}{\\beta_2}(q - \\nu), 1)`."""
    if opt.kind == "gd":
        return FlowState(jnp.zeros_like(state.nu), jnp.ones_like(state.count))
    c = (1 - opt.b2) / opt.b2
    return FlowState(c * (target - state.nu), jnp.ones_like(state.count))


def discrete_flow_state(opt: FlowOptimizer, opt_state, step: int) -> FlowState:
    """The :class:`FlowState` inside the discrete process's optax state after ``step + 1`` updates."""
    count = jnp.asarray(step + 1, jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    if opt.kind == "gd":
        return FlowState(jnp.zeros((), count.dtype), count)
    return FlowState(opt_state[0].nu, count)
