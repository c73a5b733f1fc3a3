r"""The Adam half of task ``ntk``: Adam in the regime of Malladi et al.'s A-SignGD kernel.

The paper derives the asymmetric SignGD kernel :math:`K^A(\xi, x) = \langle\nabla f(\xi),
\mathrm{sign}\,\nabla f(x)\rangle` for **SignGD**, the limit of Adam with :math:`\varepsilon \to 0`
and no moment averaging (Adam's first step, or :math:`\beta_1 = \beta_2 = 0`), for a scalar output
(binary tasks, f = logit difference), in the kernel regime (small steps, early training). There, one
step on example :math:`x_i` with loss :math:`\ell(f, y)` and :math:`\chi_i = \partial\ell/\partial f`
moves the function by

.. math::
  f_t(\xi) = f_{t-1}(\xi) - \eta\,\mathrm{sign}(\chi_i)\,K^A(\xi, x_i),

since :math:`\mathrm{sign}(\chi_i \nabla f(x_i)) = \mathrm{sign}(\chi_i)\,\mathrm{sign}\,\nabla f(x_i)`
for a scalar f (the identity that needs one scalar output per step: a sign of a *sum* of gradients does
not split into per-example signs). This module sets that regime up on the ``ntk`` task: two target
classes, f = f_b − f_a of the pre-trained head (labels ±1, loss ½(f − y)²), Adam with
``ntk.finetune.adam_b1``/``adam_b2`` (0: SignGD up to ε) on one example per step for
``adam_epochs`` passes, step ``adam_lr``, and compares the fine-tuned test outputs with the kernel
analog above (same examples, order and η, kernel at θ₀), and with the same dynamics under the eNTK
:math:`\langle\nabla f(\xi), \nabla f(x)\rangle` at the rate, from a grid around the kernels' trace
ratio, that best fits the fine-tuned *training* outputs (a baseline given every advantage).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dynamics.ntk import flat_jacobian
from dynamics.ntk.diagnostics import relative_change

# eNTK baseline rates, as multiples of η · tr K^A / tr K (the rate at which both move f(x_i) alike)
ENTK_RATE_GRID = (0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0)


def binary_output(apply_fn, logits):
    """f(x) = f_b(x) − f_a(x) as an ``(N, 1)`` output, for ``logits = (a, b)``."""
    a, b = logits

    def f(params, x):
        out = apply_fn(params, x)
        return (out[:, b] - out[:, a])[:, None]

    return f


def sign_kernel_dynamics(k_tr, k_te, f0_tr, f0_te, y, order, rate):
    """Kernel analog of per-example SignGD on ½(f − y)²: for i in ``order``,
    f ← f − rate · sign(f(x_i) − y_i) · K(·, x_i) on the training and test points.

    ``k_tr`` (N, N) and ``k_te`` (M, N) are K(x, x_j) with the *training* point second. Returns the
    final (f_tr, f_te).
    """
    def step(carry, i):
        f_tr, f_te = carry
        s = jnp.sign(f_tr[i] - y[i])
        return (f_tr - rate * s * k_tr[:, i], f_te - rate * s * k_te[:, i]), None

    return jax.lax.scan(step, (f0_tr, f0_te), order)[0]


def per_example_train(f, tx, params, x, y, order):
    """One optax step per training example, in ``order``, on ½(f(x_i) − y_i)². Returns the final
    parameters and the per-step losses (before each step)."""
    def loss(p, i):
        return 0.5 * (f(p, x[i][None])[0, 0] - y[i]) ** 2

    def step(carry, i):
        p, state = carry
        value, grad = jax.value_and_grad(loss)(p, i)
        updates, state = tx.update(grad, state, p)
        return (optax.apply_updates(p, updates), state), value

    (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), order)
    return params, losses


def _order(key, n: int, epochs: int):
    return jnp.concatenate([jax.random.permutation(jax.random.fold_in(key, e), n) for e in range(epochs)])


def _kernels(j_tr, j_te):
    """From scalar-output Jacobians (N, P), (M, P): A-SignGD (sign on the training point), eNTK and the
    wrong-order ⟨sign ∇f(x), ∇f(x_j)⟩, each as (train, test) blocks K(·, x_j)."""
    sign_tr = jnp.sign(j_tr)
    return (j_tr @ sign_tr.T, j_te @ sign_tr.T, j_tr @ j_tr.T, j_te @ j_tr.T,
            sign_tr @ j_tr.T, jnp.sign(j_te) @ j_tr.T)


def adam_vs_sign_kernel(cfg, apply_fn, params0, x_tr, y_tr, x_te, y_te, key) -> tuple[dict, np.ndarray]:
    """Fine-tune the binary sub-task with per-example Adam and compare with the A-SignGD and eNTK
    kernel analogs. ``y_tr`` / ``y_te`` are target labels (logit indices); only the two classes of
    ``ntk.finetune.sign_classes`` are used. Returns the numbers and the per-step losses."""
    n = cfg.ntk.finetune
    pair = tuple(list(n.target_classes).index(c) for c in n.sign_classes)
    f = jax.jit(binary_output(apply_fn, pair))
    sel_tr, sel_te = np.isin(np.asarray(y_tr), pair), np.isin(np.asarray(y_te), pair)
    x_tr, x_te = x_tr[sel_tr], x_te[sel_te]
    y_tr = jnp.where(jnp.asarray(y_tr)[sel_tr] == pair[1], 1.0, -1.0).astype(x_tr.dtype)
    y_te = jnp.where(jnp.asarray(y_te)[sel_te] == pair[1], 1.0, -1.0).astype(x_tr.dtype)
    order = _order(key, len(y_tr), n.adam_epochs)

    jac = jax.jit(lambda p, x: flat_jacobian(f, p, x)[:, 0])
    ka_tr, ka_te, k_tr, k_te, kf_tr, kf_te = _kernels(jac(params0, x_tr), jac(params0, x_te))
    f0_tr, f0_te = f(params0, x_tr)[:, 0], f(params0, x_te)[:, 0]

    tx = optax.adam(n.adam_lr, b1=n.adam_b1, b2=n.adam_b2, eps=n.adam_eps)
    params, losses = per_example_train(f, tx, params0, x_tr, y_tr, order)
    ft_tr, ft_te = f(params, x_tr)[:, 0], f(params, x_te)[:, 0]
    moved = jnp.linalg.norm(ft_te - f0_te)

    dynamics = jax.jit(sign_kernel_dynamics)
    ka_fit = dynamics(ka_tr, ka_te, f0_tr, f0_te, y_tr, order, n.adam_lr)
    flipped = dynamics(kf_tr, kf_te, f0_tr, f0_te, y_tr, order, n.adam_lr)
    base_rate = n.adam_lr * float(jnp.trace(ka_tr) / jnp.trace(k_tr))
    fits = [dynamics(k_tr, k_te, f0_tr, f0_te, y_tr, order, base_rate * s) for s in ENTK_RATE_GRID]
    best = int(np.argmin([float(jnp.linalg.norm(ft_tr - g[0])) for g in fits]))
    entk_fit = fits[best]
    j_end = jac(params, x_tr)

    def gap(g):
        return float(jnp.linalg.norm(ft_te - g[1]) / moved)

    def acc(out):
        return float(jnp.mean(jnp.sign(out) == y_te))

    out = {
        "function_gap": gap(ka_fit),
        "entk_function_gap": gap(entk_fit),
        "entk_rate_multiple": ENTK_RATE_GRID[best],
        "flipped_function_gap": gap(flipped),
        "kernel_change": relative_change(j_end @ jnp.sign(j_end).T, ka_tr),
        "function_moved_rms": float(moved / np.sqrt(len(y_te))),
        "train_moved_rms": float(jnp.linalg.norm(ft_tr - f0_tr) / np.sqrt(len(y_tr))),
        "ft_test_acc": acc(ft_te), "kernel_test_acc": acc(ka_fit[1]), "entk_test_acc": acc(entk_fit[1]),
        "f0_test_acc": acc(f0_te),
        "agreement": float(jnp.mean(jnp.sign(ft_te) == jnp.sign(ka_fit[1]))),
        "steps": int(order.size), "lr": n.adam_lr, "b1": n.adam_b1, "b2": n.adam_b2, "eps": n.adam_eps,
        "n_train": int(len(y_tr)), "n_test": int(len(y_te)),
        "_f_te": np.asarray(ft_te), "_f_kernel": np.asarray(ka_fit[1]),
    }
    return out, np.asarray(losses)
