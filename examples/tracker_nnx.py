"""Your own training loop, tracked: a flax.nnx MLP trained by optax Adam, with dynamics.Tracker.

The loop is plain JAX (one jitted step function); the tracker is called once per step, measures every
``every`` steps the sharpness λ_max(∇²L), Adam's preconditioned sharpness λ_max(P⁻¹∇²L) from the optax
state, the Hessian trace, and the empirical NTK on a probe set, all warm-started, and writes
``metrics.jsonl`` and figures like a ``python -m dynamics.run`` run.

    python examples/tracker_nnx.py --steps 300 --out runs/tracker_nnx

Runs in about half a minute on a laptop CPU.
"""

import argparse

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from dynamics import Tracker


class MLP(nnx.Module):
    def __init__(self, d_in: int, width: int, d_out: int, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(d_in, width, rngs=rngs)
        self.out = nnx.Linear(width, d_out, rngs=rngs)

    def __call__(self, x):
        return self.out(jnp.tanh(self.hidden(x)))


def make_data(key, n=256, d_in=8, d_out=3):
    """A random teacher network's outputs on Gaussian inputs (regression)."""
    k_x, k_w = jax.random.split(key)
    x = jax.random.normal(k_x, (n, d_in))
    w = jax.random.normal(k_w, (d_in, d_out)) / jnp.sqrt(d_in)
    return x, jnp.sin(2 * x @ w)


def main(steps: int = 300, every: int = 10, lr: float = 0.01, width: int = 32, tol: float = 1e-3,
         out: str | None = None, seed: int = 0, plot: bool = True):
    """Train and track; returns ``(tracker, params, opt_state, loss_fn, apply_fn, data)``."""
    x, y = make_data(jax.random.key(seed))
    model = MLP(x.shape[1], width, y.shape[1], rngs=nnx.Rngs(seed))
    graphdef, params = nnx.split(model, nnx.Param)  # params: an nnx.State pytree

    def apply_fn(params, x):
        return nnx.merge(graphdef, params)(x)

    def loss_fn(params, x, y):
        return 0.5 * jnp.mean(jnp.sum((apply_fn(params, x) - y) ** 2, axis=-1))

    optimizer = optax.adam(lr)
    opt_state = optimizer.init(params)

    @jax.jit
    def train_step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    tracker = Tracker(loss_fn, every=every, tol=tol, lr=lr, precond=True, trace_samples=20,
                      ntk_apply=apply_fn, ntk_inputs=x[:16], ntk_targets=y[:16], log_dir=out)
    for step in range(steps):
        # measured at the iterate before this step's update, as a run logs it (at step 0 Adam has no
        # second-moment estimate yet: precond_sharpness is null there)
        new_params, new_opt_state, loss = train_step(params, opt_state, x, y)
        row = tracker(step, params, x, y, opt_state=opt_state, loss=loss)
        if "sharpness" in row and step % (10 * every) == 0:
            print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
        params, opt_state = new_params, new_opt_state
    if plot and out is not None:
        tracker.plot()
    tracker.close()
    return tracker, params, opt_state, loss_fn, apply_fn, (x, y)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--out", default="runs/tracker_nnx")
    args = parser.parse_args()
    main(args.steps, args.every, args.lr, out=args.out)
