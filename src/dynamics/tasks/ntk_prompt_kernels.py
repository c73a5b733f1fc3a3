"""Task ``ntk_prompt``, the kernel side: flat Jacobians → eNTK, margin kernels, kernel gradient descent for
any loss, and the fine-tuning program (GD or Adam in one compiled chunk, run until a stop rule holds)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dynamics.ntk import flat_jacobian

# ------------------------------------------------------------------------------ kernel solutions

def kernel_gradient_descent(k_train_train, k_test_train, f0_train, f0_test, labels, loss, lr: float,
                            steps: int):
    r"""Full-batch GD on the linearized model, in function space, for any loss.

    With :math:`g_t = \partial L/\partial f(X)` at the training outputs (``jax.grad(loss)``, so the
    loss's mean over examples is included),

    .. math::
      f_{t+1}(x) = f_t(x) - \eta \sum_{j, b} K[x, j, :, b]\, g_t[j, b],

    which is exactly what GD with rate η on :math:`f^{\mathrm{lin}}(\theta) = f_0 + J(\theta - \theta_0)`
    does to the outputs (θ moves by :math:`-\eta J(X)^\top g_t`). For ``mse`` it equals
    ``gradient_descent_mse(..., discrete=True)`` with rate η·O.

    Args:
      k_train_train: ``(N, N, O, O)`` eNTK on the training inputs.
      k_test_train: ``(N_test, N, O, O)``.
      f0_train, f0_test: outputs at θ₀, ``(N, O)`` and ``(N_test, O)``.
      labels: integer labels ``(N,)`` (``loss`` one-hot encodes them as it needs).
      loss: ``loss(outputs, labels) -> scalar`` (a ``dynamics.losses`` loss).
      lr: η.
      steps: number of GD steps.

    Returns:
      ``(f_train, f_test, losses)`` after ``steps`` steps; ``losses[t]`` is L at step t (``steps + 1``
      values).
    """
    grad = jax.grad(loss)

    def body(carry, _):
        f_tr, f_te = carry
        g = grad(f_tr, labels)
        f_tr = f_tr - lr * jnp.einsum("ijab,jb->ia", k_train_train, g)
        f_te = f_te - lr * jnp.einsum("ijab,jb->ia", k_test_train, g)
        return (f_tr, f_te), loss(carry[0], labels)

    (f_tr, f_te), losses = jax.lax.scan(body, (f0_train, f0_test), None, length=steps)
    return f_tr, f_te, jnp.append(losses, loss(f_tr, labels))


# ------------------------------------------------------------------------------------ fine-tuning

def jacobian_fn(apply_fn, block_size: int | None):
    """``jac(params, x) -> (f, J)``: outputs ``(N, O)`` and flat per-example Jacobians ``(N, O, P)``.

    ``J`` is ``dynamics.ntk.flat_jacobian``, so ``K = J₁ J₂ᵀ`` is the eNTK and ``f₀ + J (θ − θ₀)`` the
    linearized model. With ``block_size`` one compiled program handles every N (blocks of
    ``block_size`` examples, the last one padded by repeating its last example); ``None`` computes all
    examples in one call.
    """
    @jax.jit
    def block(params, xb):
        return apply_fn(params, xb), flat_jacobian(apply_fn, params, xb)

    def jac(params, x):
        n = x.shape[0]
        size = n if block_size is None else block_size
        pad = -n % size
        if pad:
            x = jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)])
        outs = [block(params, x[i:i + size]) for i in range(0, n + pad, size)]
        return (jnp.concatenate([o[0] for o in outs])[:n], jnp.concatenate([o[1] for o in outs])[:n])

    return jac


def kernel(j1: jax.Array, j2: jax.Array) -> jax.Array:
    """``K[i, j, a, b] = ⟨J1[i, a], J2[j, b]⟩``, shape ``(N1, N2, O, O)``."""
    return jnp.einsum("iap,jbp->ijab", j1, j2, precision=jax.lax.Precision.HIGHEST)


def margin(f: jax.Array) -> jax.Array:
    """The classification margin m = f_great − f_terrible (logit of class 1 minus class 0)."""
    return f[..., 1] - f[..., 0]


def margin_kernel(j: jax.Array) -> jax.Array:
    """The eNTK of the margin, ⟨∇m(x_i), ∇m(x_j)⟩ = K11 − K10 − K01 + K00, shape ``(N, N, 1, 1)``."""
    d = j[:, 1:] - j[:, :1]
    return kernel(d, d)


def make_finetune(apply_fn, loss, tx, chunk: int):
    """Jitted full-batch training in chunks: ``(init, run)``.

    ``init(params, lr=None) -> opt_state`` (``lr`` overrides the injected learning rate: a new value,
    the same compiled program); ``run(params, opt_state, x, y, w) -> (params, opt_state, losses, last)``
    takes ``chunk`` steps of ``tx`` and returns the objective before each step and after the last.
    The objective is the ``w``-weighted mean of the per-example ``loss`` (``w`` = 1 on the k-shot
    examples, 0 on padding), so one compiled program serves every k.
    """
    def objective(params, x, y, w):
        out = apply_fn(params, x)
        per_example = jax.vmap(lambda o, t: loss(o[None], t[None]))(out, y)
        return jnp.sum(w * per_example) / jnp.sum(w)

    @jax.jit
    def run(params, opt_state, x, y, w):
        def body(carry, _):
            params, opt_state = carry
            value, grads = jax.value_and_grad(objective)(params, x, y, w)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), value

        (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), None, length=chunk)
        return params, opt_state, losses, objective(params, x, y, w)

    def init(params, lr=None, **hyperparams):
        state = tx.init(params)
        for name, value in ({"learning_rate": lr} | hyperparams).items():
            if value is not None:  # an injected hyperparameter: a new value, the same compiled program
                state.hyperparams[name] = jnp.asarray(value, state.hyperparams[name].dtype)
        return state

    return init, run


def train_until(init, run, params, x, y, w, *, max_steps: int, stop):
    """Train in chunks until ``stop(params, loss)`` holds (checked after each chunk) or ``max_steps``
    (a multiple of the chunk); returns the params, the losses at steps 0..T and whether ``stop`` held.
    ``init(params) -> opt_state`` and ``run`` are :func:`make_finetune`'s."""
    state = init(params)
    curve, last, done = [], np.inf, False
    while len(curve) < max_steps and not done:
        params, state, losses, last = run(params, state, x, y, w)
        curve.extend(np.asarray(losses).tolist())
        last = float(last)
        done = bool(stop(params, last))
    return params, np.array(curve + [last]), done


def rms(a: jax.Array) -> float:
    """Root mean square of ``a``."""
    return float(jnp.sqrt(jnp.mean(jnp.square(a))))


def gd_or_adam(learning_rate, adam, b1=0.9, b2=0.999, eps=1e-8) -> optax.GradientTransformation:
    r"""GD (``adam`` = 0) or Adam (``adam`` = 1) as one transformation, so that under
    ``optax.inject_hyperparams`` both run in the same compiled program (the switch is traced).

    Updates: :math:`-\eta g` (``optax.sgd``) or :math:`-\eta\,\hat m/(\sqrt{\hat v} + \epsilon)`
    (``optax.adam``); Adam's moments are tracked in both cases (cheap).
    """
    scale = optax.scale_by_adam(b1, b2, eps)

    def update(grads, state, params=None):
        adam_dir, state = scale.update(grads, state, params)
        updates = jax.tree.map(lambda a, g: -learning_rate * jnp.where(adam > 0.5, a, g), adam_dir, grads)
        return updates, state

    return optax.GradientTransformation(scale.init, update)


def top_eigenvalue(k: jax.Array, *, shift_invariant: bool = False) -> float:
    """λ_max of an ``(N, N, O, O)`` kernel flattened to ``(N O) × (N O)``.

    ``shift_invariant``: of the kernel restricted to logit vectors summing to zero (P K P with
    P = I − 𝟙𝟙ᵀ/O on both logit axes), the only directions a softmax cross-entropy depends on.
    """
    n, _, o, _ = k.shape
    if shift_invariant:
        proj = jnp.eye(o, dtype=k.dtype) - 1.0 / o
        k = jnp.einsum("ac,ijcd,db->ijab", proj, k, proj)
    return float(jnp.linalg.eigvalsh(jnp.transpose(k, (0, 2, 1, 3)).reshape(n * o, n * o))[-1])


def gd_learning_rate(relative_lr: float | None, lr: float, lam_max: float, n: int) -> float:
    """GD's step: ``relative_lr · N / λ_max`` (``ntk.prompt.relative_lr``), or ``lr`` (``optimizer.lr``)
    when ``relative_lr`` is None.

    The relative step is in units of the linearized model's curvature λ_max(K₀)/N, the same for both
    variants whatever their kernel's scale (for ``cross_entropy`` λ_max of the kernel on zero-sum logit
    vectors, see :func:`top_eigenvalue`): GD on the linearized model is stable below 2 for ``mse`` and
    below 4 for 2-class ``cross_entropy`` (logit Hessian ≤ ½).
    """
    return lr if relative_lr is None else relative_lr * n / lam_max


def pad_rows(a: jax.Array, n: int) -> jax.Array:
    return jnp.concatenate([a, jnp.repeat(a[-1:], n - a.shape[0], axis=0)]) if n > a.shape[0] else a
