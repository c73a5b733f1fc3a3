"""Pure training steps and many steps per compiled call (``lax.scan`` over a chunk)."""

from collections.abc import Callable

import jax
import optax

from dynamics.losses import accuracy
from dynamics.train.oracles import build_oracle
from dynamics.train.state import TrainState

PyTree = object


def make_objective(apply_fn: Callable, loss: Callable) -> Callable:
    """``objective(params, x, y) -> (loss, outputs)``."""

    def objective(params, x, y):
        outputs = apply_fn(params, x)
        return loss(outputs, y), outputs

    return objective


def make_step(apply_fn: Callable, loss: Callable, tx: optax.GradientTransformation, *,
              batch_size: int | None, classification: bool, oracle: str = "batch",
              extra_args: tuple[str, ...] = (), **oracle_options) -> Callable:
    """One optimizer step ``step(state, x, y) -> (state, metrics)``.

    ``batch_size=None`` is full-batch; otherwise the batch for step t is drawn from ``state.key`` and t.
    ``oracle`` names the gradient oracle (``dynamics.train.oracles``: ``batch``, ``label_noise``,
    ``svag``) and ``oracle_options`` are its options. ``extra_args`` names the keyword arguments the
    optimizer's update needs (optax's extra-args convention): ``value`` (the step's loss), ``grad``,
    and ``value_fn`` / ``obj_fn`` (the step's loss as a function of the parameters, on the same batch
    and noise). The metrics describe the iterate *before* the update: ``loss`` is L(θ_t) on the batch
    used at step t and ``grad_norm`` the norm of the gradient estimate the optimizer received.
    """
    gradient = build_oracle(oracle, make_objective(apply_fn, loss), batch_size=batch_size,
                            **oracle_options)

    def step(state: TrainState, x: jax.Array, y: jax.Array):
        value, outputs, y_used, grads = gradient(state.params, x, y, state.key, state.step)

        def loss_at(params):  # the same batch and noise: key and step are fixed
            return gradient(params, x, y, state.key, state.step)[0]

        given = {"value": value, "grad": grads, "value_fn": loss_at, "obj_fn": loss_at}
        extra = {k: given[k] for k in extra_args}
        updates, opt_state = tx.update(grads, state.opt_state, state.params, **extra)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": value, "grad_norm": optax.global_norm(grads)}
        if classification:
            metrics["accuracy"] = accuracy(outputs, y_used)
        return TrainState(state.step + 1, params, opt_state, state.key), metrics

    return step


def make_chunk(step: Callable, length: int) -> Callable:
    """Jitted ``chunk(state, x, y) -> (state, metrics stacked over length steps)``.

    Data are jit arguments, never closed-over constants (those get constant-folded by XLA).
    """

    @jax.jit
    def chunk(state, x, y):
        return jax.lax.scan(lambda s, _: step(s, x, y), state, None, length=length)

    return chunk


def evaluate(apply_fn: Callable, loss: Callable, classification: bool, *,
             with_grad_norm: bool = False) -> Callable:
    """Jitted ``eval(params, x, y) -> {"loss", ["accuracy"], ["grad_norm"]}`` on the given arrays."""
    objective = make_objective(apply_fn, loss)

    @jax.jit
    def run(params, x, y):
        if with_grad_norm:
            (value, outputs), grads = jax.value_and_grad(objective, has_aux=True)(params, x, y)
        else:
            value, outputs = objective(params, x, y)
        out = {"loss": value}
        if with_grad_norm:
            out["grad_norm"] = optax.global_norm(grads)
        if classification:
            out["accuracy"] = accuracy(outputs, y)
        return out

    return run
