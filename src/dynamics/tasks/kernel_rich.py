"""Task ``kernel_rich``: the kernel and rich regimes (Woodworth et al., COLT 2020).

GD on x = u⊙u − v⊙v from u = v = α for each α in ``alphas`` (step min(``optimizer.lr``, lr_scale/α²); each α
freezes once ‖Zx − y‖ < tol, and the loop exits once every α has, so ``train.steps`` is a budget that costs
only what convergence needs) vs argmin Q_α s.t. Zx = y (dual Newton oracle), with the min-ℓ1 and min-ℓ2
interpolants as references; every solution's place between them, in the ℓ1 norm the α → 0 theorem is about,
is ``l1_excess`` = (‖x‖₁ − ‖x_ℓ1‖₁)/(‖x_ℓ2‖₁ − ‖x_ℓ1‖₁) (0 at min-ℓ1, 1 at min-ℓ2), and in distance ``l1_frac`` =
‖x − x_ℓ1‖/‖x_ℓ2 − x_ℓ1‖. argmin Q_α is also solved below the grid (``LIMIT_DECADES`` decades under
the smallest α: the α → 0 limit). One seed (data: ``seed``'s stream) per run. The claim needs α = rich_alpha,
l2_alpha and an α between them in the grid and fails (missing) without them, e.g.
``implicit_bias.kernel_rich.alphas=[0.3,1.0]``.
"""

import jax
import jax.numpy as jnp
import numpy as np

from dynamics.config import Config
from dynamics.flows import (argmin_woodworth, diag_map, init_params, log_steps, min_l2_interpolant,
                            min_weighted_l1_interpolant, run_gd, sparse_regression)
from dynamics.io import RunDir
from dynamics.tasks.base import TASKS
from dynamics.tasks.implicit_bias_common import figure, finish, floats
from dynamics.tasks.train import set_precision
from dynamics.train import rng_streams

LIMIT_DECADES = 4  # argmin Q_α at min(alphas)·10⁻¹ … 10⁻⁴ (dual Newton converges there; at 1e-8 it does not)


def _gd_until_converged(w0, Z, y, lr, steps: int, every: int, tol: float):
    """``run_gd`` (frozen once ‖Zx − y‖ < tol) in chunks of ``every`` steps inside a while loop that exits
    once the iterate is frozen or ``steps`` are spent. Returns the logged x at ``log_steps(steps, every)``
    (rows after the exit repeat the frozen x, as a full scan would) and the steps run (a multiple of ``every``,
    or ``steps``)."""
    every = max(1, min(every, steps)) if steps > 0 else 1
    chunks, rem = divmod(steps, every)
    x_of = lambda w: diag_map("uu_minus_vv", w)

    def chunk(w, length):
        return run_gd("uu_minus_vv", w, Z, y, lr=lr, steps=length, log_every=length, tol=tol)[0]

    def cond(c):
        i, w, _ = c
        return (i < chunks) & (jnp.linalg.norm(Z @ x_of(w) - y) >= tol)

    def body(c):
        i, w, buf = c
        w = chunk(w, every)
        return i + 1, w, buf.at[i + 1].set(x_of(w))

    buf = jnp.zeros((chunks + 1, Z.shape[1]), Z.dtype).at[0].set(x_of(w0))
    i, w, buf = jax.lax.while_loop(cond, body, (jnp.asarray(0), w0, buf))
    buf = jnp.where((jnp.arange(chunks + 1) > i)[:, None], x_of(w)[None], buf)
    ran = i * every
    if rem:
        w = chunk(w, rem)  # frozen already unless the budget ran out
        buf = jnp.concatenate([buf, x_of(w)[None]])
        ran = jnp.where(i == chunks, steps, ran)
    return buf, ran


def _simulate(cfg: Config, dtype):
    k, steps, every = cfg.implicit_bias.kernel_rich, cfg.train.steps, cfg.train.log_every
    alphas = jnp.asarray(k.alphas, dtype)
    lrs = jnp.minimum(cfg.optimizer.lr, k.lr_scale / alphas ** 2)

    @jax.jit
    def go(key, alphas, lrs):
        Z, y, w_star = sparse_regression(key, k.d, k.n, k.sparsity, dtype)

        def one(a, lr):
            xs, ran = _gd_until_converged(init_params(k.d, 1.0, dtype=dtype) * a, Z, y, lr, steps, every, k.tol)
            x_q, res_q = argmin_woodworth(Z, y, a)
            return xs, ran, x_q, res_q

        return (Z, y, w_star, *jax.vmap(one)(alphas, lrs))

    return lrs, jax.device_get(go(rng_streams(cfg.seed)["data"], alphas, lrs))


@TASKS.register("kernel_rich")
def run_kernel_rich_task(cfg: Config, run: RunDir) -> dict:
    """GD on u⊙u − v⊙v from u = v = α for each α vs argmin Q_α; ℓ1 and ℓ2 references."""
    k = cfg.implicit_bias.kernel_rich
    dtype = set_precision(cfg.precision)
    lrs, (Z, y, w_star, xs, ran, x_q, res_q) = _simulate(cfg, dtype)
    nrm = np.linalg.norm(w_star)
    x_l2 = np.asarray(min_l2_interpolant(Z, y))
    x_l1 = min_weighted_l1_interpolant(Z, y)
    rows = []
    for i, s in enumerate(log_steps(cfg.train.steps, cfg.train.log_every)):
        res = np.linalg.norm(xs[:, i] @ Z.T - y, axis=1)
        row = {"step": s, "loss": float(0.5 * np.mean(res ** 2 / k.n))}
        for j, a in enumerate(k.alphas):
            row[f"rel_err_a{a:g}"] = float(np.linalg.norm(xs[j, i] - w_star) / nrm)
            row[f"residual_a{a:g}"] = float(res[j])
        rows.append(row)
    x_gd = xs[:, -1]
    frac, excess = _l1_frac(x_l1, x_l2), _l1_excess(x_l1, x_l2)
    lim_alphas, x_lim, res_lim = _limit(Z, y, min(k.alphas))
    context = {"alphas": list(k.alphas), "gd_rel_err": floats(np.linalg.norm(x_gd - w_star, axis=1) / nrm),
               "q_rel_err": floats(np.linalg.norm(x_q - w_star, axis=1) / nrm),
               "gd_to_q": floats(np.linalg.norm(x_gd - x_q, axis=1) / nrm),
               "residual": floats(np.linalg.norm(x_gd @ Z.T - y, axis=1)), "q_residual": floats(res_q),
               "gd_steps": [int(r) for r in ran],
               "l2_rel_err": float(np.linalg.norm(x_l2 - w_star) / nrm),
               "l1_rel_err": float(np.linalg.norm(x_l1 - w_star) / nrm),
               "l1_excess": floats(excess(x_gd)), "q_l1_excess": floats(excess(x_q)),
               "l1_frac": floats(frac(x_gd)), "l2_frac": floats(frac(x_gd, x_l2)), "q_l1_frac": floats(frac(x_q)),
               "limit_alphas": floats(lim_alphas), "limit_l1_excess": floats(excess(x_lim)),
               "limit_l1_frac": floats(frac(x_lim)), "limit_residual": floats(res_lim)}
    summary = finish(cfg, run, rows, context, {"alphas": list(k.alphas), "lrs": floats(lrs), "tol": k.tol,
                                               "d": k.d, "n": k.n, "sparsity": k.sparsity},
                     {key: v for key, v in context.items() if key != "alphas"})
    _plot(run, Z, y, w_star, x_gd, x_q, x_l1, x_l2, k.alphas, cfg.name)
    return summary


def _l1_frac(x_l1, x_l2):
    """x ↦ ‖x − ref‖/‖x_ℓ2 − x_ℓ1‖ for each row of x (ref = x_ℓ1 unless given): a place between the two
    interpolants in units of their distance, free of the scale of y and of n, d."""
    sep = np.linalg.norm(x_l2 - x_l1)
    return lambda x, ref=x_l1: np.linalg.norm(np.asarray(x) - ref, axis=-1) / sep


def _l1_excess(x_l1, x_l2):
    """x ↦ (‖x‖₁ − ‖x_ℓ1‖₁)/(‖x_ℓ2‖₁ − ‖x_ℓ1‖₁) for each row of x: the ℓ1 norm's excess over the minimum, in units
    of the min-ℓ2 interpolant's excess (scale-free; robust where near-minimal-ℓ1 interpolants lie far apart)."""
    lo, hi = np.abs(x_l1).sum(), np.abs(np.asarray(x_l2)).sum()
    return lambda x: (np.abs(np.asarray(x)).sum(axis=-1) - lo) / (hi - lo)


_argmin_q_vmapped = jax.jit(jax.vmap(argmin_woodworth, in_axes=(None, None, 0)))  # one program per shape


def _argmin_q(Z, y, alphas):
    """argmin Q_α s.t. Zx = y and its residual for each α of ``alphas`` (numpy arrays)."""
    Z = jnp.asarray(Z)
    x, res = _argmin_q_vmapped(Z, jnp.asarray(y), jnp.asarray(alphas, Z.dtype))
    return np.asarray(x), np.asarray(res)


def _limit(Z, y, alpha_min: float):
    """argmin Q_α and its residual at α = alpha_min·10⁻ʲ, j = 1 … LIMIT_DECADES (the oracle only)."""
    lim = alpha_min * 10.0 ** -np.arange(1, LIMIT_DECADES + 1)
    return (lim, *_argmin_q(Z, y, lim))


def _plot(run, Z, y, w_star, x_gd, x_q, x_l1, x_l2, alphas, title):
    plt, path = figure(run.figures, "kernel_rich.png")
    nrm = np.linalg.norm(w_star)
    grid = np.logspace(np.log10(min(alphas)) - 1, np.log10(max(alphas)) + 0.5, 25)
    x_grid = _argmin_q(Z, y, grid)[0]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].plot(grid, np.linalg.norm(np.asarray(x_grid) - w_star, axis=1) / nrm, "-", color="C0",
                 label="argmin Q_α (Woodworth potential)")
    axes[0].plot(alphas, np.linalg.norm(x_gd - w_star, axis=1) / nrm, "o", color="C3", label="GD from u = v = α")
    axes[0].axhline(np.linalg.norm(x_l2 - w_star) / nrm, color="k", ls="--", lw=0.8, label="min-ℓ2 (kernel)")
    axes[0].axhline(max(np.linalg.norm(x_l1 - w_star) / nrm, 1e-16), color="k", ls=":", lw=0.8,
                    label="min-ℓ1 (rich)")
    axes[0].set(xscale="log", xlabel="init scale α", ylabel="‖x − w*‖/‖w*‖", title=title)
    axes[0].legend(fontsize=8)
    order = np.argsort(-np.abs(x_l2))[:30]
    for j, a in enumerate(alphas):
        axes[1].plot(x_gd[j][order], "o", ms=3, color=f"C{j}", label=f"GD α={a:g}")
        axes[1].plot(x_q[j][order], "-", lw=0.7, color=f"C{j}")
    axes[1].plot(w_star[order], "k_", ms=8, label="w*")
    axes[1].set(xlabel="coordinate (30 largest of min-ℓ2)", ylabel="x_j (lines: argmin Q_α)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
