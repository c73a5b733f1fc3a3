r"""Task ``sde_quadratic``: discrete SGD/RMSprop/Adam vs their SDEs vs closed forms on noisy quadratics.

Three parts, one run (papers/sde.md §6, §8):

1. **SGD.** f = ½(θ₁² + ¼θ₂²), gradient noise N(0, diag(1, 4)·σ²), θ₀ = (2, −2). Discrete SGD (optax,
   Monte Carlo), the SGD SDE dθ = −∇f dt + √η Σ^{1/2} dW (Euler–Maruyama, Monte Carlo) and the closed
   forms (discrete: Var θ_k = (1 − (1−ηh)^{2k})·ηs/(h(2−ηh)); SDE: OU, stationary ηs/(2h)), at η and
   η/2 to the same time T = ``train.steps``·η. The weak error |E f_disc(T)/E f_SDE(T) − 1| is O(η): the
   ratio of the errors at η and η/2 is ≈ 2.
2. **RMSprop/Adam.** The same problem in the scaling of Malladi et al. (2022): σ₀ = ση, ε₀ = εη,
   c_i = (1 − β_i)/η² fixed while η halves (σ doubles, 1 − β ×¼, 4× the steps), against the RMSprop/Adam
   SDEs simulated with a step (η/2)²/``sde.sde_substeps``; the weak error of E f(θ_T) shrinks with η.
3. **Scaling rules on the NQM** (§8.4): h = logspace(0, log10 h_min), per-sample noise covariance σ₁²H,
   base batch B0 → κB0 with 1/κ times the steps; the loss against samples seen stays within 5 % of the
   base under the square-root rule (RMSprop, Adam) and is ≥ 30 % off under the linear rule; SGD with the
   linear rule as the baseline; the base floor matches (η/4)Σᵢ Var[gᵢ]/(√Var[gᵢ] + ε) (RMSprop:
   × (1 − β2^k)^(-1/2), no bias correction in optax; SGD: the discrete chain's Σ ηs/(2(2 − ηh)));
   and a low-noise control (σ₁ = 1, θ₀ = 3) where the square-root rule must fail.

Metrics rows: the discrete SGD run of part 1 at η = ``optimizer.lr`` (``loss`` = Monte Carlo E f(θ_k),
``loss_sde`` the SDE paths at the same times, ``loss_exact`` and ``loss_sde_exact`` the closed forms).
"""

import logging
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dynamics.config import Config
from dynamics.errors import check
from dynamics.io import RunDir
from dynamics.plots import plot_training
from dynamics.sde import (adam_sde, diagonal_noise, nqm_oracle, rmsprop_sde, run_optimizer,
                          sample_paths, sgd_moments, sgd_sde, sgd_sde_moments,
                          sgd_sde_stationary_variance, sgd_stationary_variance)
from dynamics.tasks.base import TASK_CHECKS, TASKS
from dynamics.tasks.sde_nqm import N_SAVES, check_scaling_keys, max_deviation, scaling_part  # noqa: F401
from dynamics.tasks.train import set_precision
from dynamics.train import rng_streams
from dynamics.claims import judge

log = logging.getLogger("dynamics")

H2 = np.array([1.0, 0.25])
S2 = np.array([1.0, 4.0])
THETA2 = np.array([2.0, -2.0])


def _loss_fn(h):
    h = jnp.asarray(h)
    return lambda theta: 0.5 * jnp.sum(h.astype(theta.dtype) * theta**2)


def _mean_se(x) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, np.float64)
    return x.mean(0), x.std(0, ddof=1) / math.sqrt(x.shape[0])


def _exact_loss(moments) -> np.ndarray:
    mean, var = (np.asarray(m, np.float64) for m in moments)
    return 0.5 * np.sum(H2 * (mean**2 + var), axis=-1)


# ------------------------------------------------------------------------------------------ part 1

def sgd_part(cfg: Config, key, dtype) -> tuple[dict, list[dict], dict]:
    """Discrete SGD vs SGD SDE vs closed forms at η and η/2; rows of the η run; curves for figures."""
    s = S2 * cfg.sde.quadratic.noise_std**2
    h, theta0 = jnp.asarray(H2, dtype), jnp.asarray(THETA2, dtype)
    f = _loss_fn(H2)
    lr0, steps0, n = cfg.optimizer.lr, cfg.train.steps, cfg.sde.quadratic.num_paths
    t_end = steps0 * lr0
    out, rows, curves = {"time": t_end, "levels": []}, [], {}
    for level, lr in enumerate((lr0, lr0 / 2)):
        steps = steps0 * 2**level
        sub = cfg.sde.quadratic.sde_substeps
        dt = lr / sub
        k_disc, k_sde = jax.random.split(jax.random.fold_in(key, level))
        disc = sample_paths(lambda k, lr=lr, steps=steps: run_optimizer(
            optax.sgd(lr), nqm_oracle(h, jnp.asarray(s, dtype)), theta0, num_steps=steps, key=k,
            observe=lambda th: th), k_disc, n)
        sde = sample_paths(lambda k, lr=lr, steps=steps, dt=dt: sgd_sde(
            lambda th: h * th, diagonal_noise(jnp.asarray(s, dtype)), theta0, lr=lr, dt=dt,
            num_steps=steps * sub, key=k, save_every=sub), k_sde, n)
        th_d, th_s = np.asarray(disc.y, np.float64), np.asarray(sde.y, np.float64)
        k = np.arange(steps + 1)
        exact_d = _exact_loss(sgd_moments(lr, H2, s, THETA2, k[:, None]))
        exact_s = _exact_loss(sgd_sde_moments(lr, H2, s, THETA2, (k * lr)[:, None]))
        # Euler–Maruyama with step dt is SGD with step dt and noise variance ηs/dt: its exact moments
        exact_em = _exact_loss(sgd_moments(dt, H2, lr * s / dt, THETA2, (k * sub)[:, None]))
        f_d = 0.5 * np.sum(H2 * th_d**2, -1)
        f_s = 0.5 * np.sum(H2 * th_s**2, -1)
        (fd_mean, fd_se), (fs_mean, fs_se) = _mean_se(f_d), _mean_se(f_s)
        var_d = th_d[:, -1].var(0, ddof=1)
        var_s = th_s[:, -1].var(0, ddof=1)
        _, var_exact_d = sgd_moments(lr, H2, s, THETA2, steps)
        _, var_exact_s = sgd_sde_moments(lr, H2, s, THETA2, t_end)
        se_var = lambda v: v * math.sqrt(2.0 / (n - 1))  # noqa: E731  (Gaussian marginals)
        out["levels"].append({
            "lr": lr, "steps": steps, "sde_dt": dt,
            "loss_discrete_mc": float(fd_mean[-1]), "loss_discrete_se": float(fd_se[-1]),
            "loss_discrete_exact": float(exact_d[-1]),
            "loss_sde_mc": float(fs_mean[-1]), "loss_sde_se": float(fs_se[-1]),
            "loss_sde_exact": float(exact_s[-1]), "loss_sde_em_exact": float(exact_em[-1]),
            "var_discrete_mc": var_d.tolist(), "var_discrete_exact": np.asarray(var_exact_d).tolist(),
            "var_sde_mc": var_s.tolist(), "var_sde_exact": np.asarray(var_exact_s).tolist(),
            "stationary_var_discrete": np.asarray(sgd_stationary_variance(lr, H2, s)).tolist(),
            "stationary_var_sde": np.asarray(sgd_sde_stationary_variance(lr, H2, s)).tolist(),
            # z-scores of the Monte Carlo against the closed forms (discrete; EM-discretized SDE)
            "z_discrete": float(np.max(np.abs(fd_mean - exact_d) / np.maximum(fd_se, 1e-300))),
            "z_sde": float(np.max(np.abs(fs_mean - exact_em) / np.maximum(fs_se, 1e-300))),
            "z_var_discrete": float(np.max(np.abs(var_d - var_exact_d) / se_var(var_exact_d))),
            "weak_error_exact": float(abs(exact_d[-1] / exact_s[-1] - 1.0)),
            "weak_error_mc": float(abs(fd_mean[-1] / exact_s[-1] - 1.0)),
            "weak_error_mc_se": float(fd_se[-1] / exact_s[-1]),
        })
        curves[f"sgd lr={lr:g}"] = (k * lr, fd_mean)
        if level == 0:
            curves["sgd SDE (exact)"] = (k * lr, exact_s)
            rows = [{"step": int(i), "time": float(i * lr), "loss": float(fd_mean[i]),
                     "loss_sde": float(fs_mean[i]), "loss_exact": float(exact_d[i]),
                     "loss_sde_exact": float(exact_s[i])} for i in k]
    lv = out["levels"]
    out["weak_error_ratio_exact"] = lv[0]["weak_error_exact"] / lv[1]["weak_error_exact"]
    out["weak_error_ratio_mc"] = lv[0]["weak_error_mc"] / max(lv[1]["weak_error_mc"], 1e-300)
    return out, rows, curves


# ------------------------------------------------------------------------------------------ part 2

def adaptive_part(cfg: Config, key, dtype) -> tuple[dict, dict]:
    """RMSprop and Adam at η and η/2 (σ0, ε0, c1, c2 fixed) against their SDEs: weak error of E f(θ_T)."""
    c = cfg.sde.quadratic
    h, theta0, base_s = (jnp.asarray(a, dtype) for a in (H2, THETA2, S2 * c.noise_std**2))
    f = _loss_fn(H2)
    n, t_end, lr0 = c.num_paths, c.adaptive_time, c.adaptive_lr
    out, curves = {}, {}
    for name in ("rmsprop", "adam"):
        ref_dt = (lr0 / 2) ** 2 / c.sde_substeps
        ref_steps = int(round(t_end / ref_dt))
        save = max(1, ref_steps // N_SAVES)
        ref_steps = save * N_SAVES
        ref_dt = t_end / ref_steps
        kw = dict(sigma0=c.sigma0, eps0=c.eps0, c2=c.c2, dt=ref_dt, num_steps=ref_steps,
                  save_every=save, observe=lambda st: f(st.theta))
        noise = diagonal_noise(base_s)
        if name == "rmsprop":
            simulate = lambda k: rmsprop_sde(lambda th: h * th, noise, theta0, key=k, **kw)  # noqa: E731
        else:
            simulate = lambda k: adam_sde(lambda th: h * th, noise, theta0, key=k, c1=c.c1, **kw)  # noqa: E731
        ref = sample_paths(simulate, jax.random.fold_in(key, 100), n)
        ref_mean, ref_se = _mean_se(ref.y)
        curves[f"{name} SDE"] = (np.asarray(ref.t).reshape(-1, ref_mean.shape[0])[0], ref_mean)
        levels = []
        for level, lr in enumerate((lr0, lr0 / 2)):
            steps = int(round(t_end / lr**2))
            sigma, eps = c.sigma0 / lr, c.eps0 / lr
            b2 = 1.0 - c.c2 * lr**2
            check(0.0 <= b2 < 1.0, "sde.quadratic.c2", c.c2,
                  f"a value with 1 - c2*lr^2 in [0, 1) at lr={lr:g}")
            if name == "rmsprop":
                tx = optax.rmsprop(lr, decay=b2, eps=eps, eps_in_sqrt=False)
                betas = {"b2": b2}
            else:
                b1 = 1.0 - c.c1 * lr**2
                check(0.0 <= b1 < 1.0, "sde.quadratic.c1", c.c1,
                      f"a value with 1 - c1*lr^2 in [0, 1) at lr={lr:g}")
                tx = optax.adam(lr, b1=b1, b2=b2, eps=eps)
                betas = {"b1": b1, "b2": b2}
            disc = sample_paths(lambda k, tx=tx, sigma=sigma, steps=steps: run_optimizer(
                tx, nqm_oracle(h, sigma**2 * base_s), theta0, num_steps=steps, key=k,
                observe=f), jax.random.fold_in(key, 10 * level + (name == "adam")), n)
            d_mean, d_se = _mean_se(disc.y)
            err = float(abs(d_mean[-1] - ref_mean[-1]))
            se = float(math.hypot(d_se[-1], ref_se[-1]))
            levels.append({"lr": lr, "steps": steps, "sigma": sigma, "eps": eps, **betas,
                           "loss_discrete": float(d_mean[-1]), "loss_sde": float(ref_mean[-1]),
                           "weak_error": err, "se": se,
                           "signed_error": float(d_mean[-1] - ref_mean[-1]),
                           "se_discrete": float(d_se[-1])})
            curves[f"{name} lr={lr:g}"] = (np.arange(steps + 1) * lr**2, d_mean)
        out[name] = {"levels": levels, "sde_dt": ref_dt,
                     "weak_error_ratio": levels[0]["weak_error"] / max(levels[1]["weak_error"],
                                                                      1e-300)}
    return out, curves


# ------------------------------------------------------------------------------------------ figure

def plot_sde_quadratic(panels: dict, figures, title: str) -> None:
    """One panel per part: ``panels`` maps a title to ``{label: (x, y)}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xlabels = ["continuous time t = kη", "continuous time t = kη²", "samples seen", "samples seen"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    for ax, xlabel, (name, curves) in zip(axes.ravel(), xlabels, panels.items()):
        for label, (x, y) in curves.items():
            ls = ":" if "linear" in label and "sgd" not in label else "--" if "SDE" in label else "-"
            ax.plot(x, y, ls, lw=1.0, label=label)
        ax.set(xlabel=xlabel, ylabel="E f(θ)", title=name, yscale="log")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    figures.mkdir(parents=True, exist_ok=True)
    fig.savefig(figures / "sde_quadratic.png", dpi=120)
    plt.close(fig)


@TASK_CHECKS.register("sde_quadratic")
def check_sde_quadratic(cfg: Config) -> None:
    """The three parts' keys, before anything runs."""
    c = cfg.sde.quadratic
    check(cfg.optimizer.lr * H2.max() < 2.0, "optimizer.lr", cfg.optimizer.lr,
          "a value < 2 (SGD on h = 1 must be stable)")
    for lr in (c.adaptive_lr, c.adaptive_lr / 2):
        for key, value in (("c2", c.c2), ("c1", c.c1)):
            check(0.0 <= 1.0 - value * lr**2 < 1.0, f"sde.quadratic.{key}", value,
                  f"a value with 1 - {key}*lr^2 in [0, 1) at lr={lr:g}")
    check_scaling_keys(c)


@TASKS.register("sde_quadratic")
def run_sde_quadratic(cfg: Config, run: RunDir) -> dict:
    """All three parts; metrics rows from part 1; verdict ``sde_quadratic``."""
    dtype = set_precision(cfg.precision)
    key = rng_streams(cfg.seed)["noise"]
    log.info("%s: part 1/3, discrete SGD vs its SDE vs closed forms", cfg.name)
    sgd, rows, c1 = sgd_part(cfg, jax.random.fold_in(key, 1), dtype)
    run.log(rows)
    log.info("%s: part 2/3, RMSprop/Adam weak error as η → η/2", cfg.name)
    adaptive, c2 = adaptive_part(cfg, jax.random.fold_in(key, 2), dtype)
    log.info("%s: part 3/3, scaling rules on the noisy quadratic model", cfg.name)
    scaling, c3 = scaling_part(cfg.sde.quadratic, jax.random.fold_in(key, 3))
    panels = {
        "SGD: discrete vs SDE": c1,
        "RMSprop/Adam (σ0, ε0, c fixed) vs SDE": c2,
        "NQM: √ rule (solid) vs linear rule (dotted)": {k: v for k, v in c3.items()
                                                       if k.startswith(("adam", "rmsprop"))},
        "SGD linear rule; low-noise control (Adam, √ rule)": {
            k: v for k, v in c3.items() if k.startswith(("sgd", "control"))},
    }
    context = {"sgd": sgd, "adaptive": adaptive, "scaling": scaling}
    verdict = judge(cfg.claim.name, run.rows, context, cfg.claim.criteria)
    plot_training(run.rows, run.figures, title=f"{cfg.name}: SGD η={cfg.optimizer.lr:g}, E f (MC)")
    plot_sde_quadratic(panels, run.figures, cfg.name)
    final = {k: v for k, v in run.rows[-1].items() if k != "step"}
    return {"status": "finished", "steps_completed": cfg.train.steps,
            "hparams": {"lr": cfg.optimizer.lr, "optimizer": "sgd", "steps": cfg.train.steps,
                        "seed": cfg.seed, "num_paths": cfg.sde.quadratic.num_paths},
            "final": final, "sde": context, "verdict": verdict}
