r"""Part 3 of ``sde_quadratic``: the scaling rules on the noisy quadratic model (papers/sde.md §8.4).

h = logspace(0, log10 h_min), per-sample noise covariance σ₁²H, base batch B0 → κB0 with 1/κ times the
steps; the loss against samples seen is compared with the base run's by ``max_deviation`` (block means
of the last 75 % of the saved points). Every deviation comes with its Monte Carlo standard error
(``deviation_with_se``: the paths of the two runs are independent), so the verdict can put bounds in
units of it. SGD under the linear rule is compared with the discrete chain's own closed-form deviation
(``sgd_moments``: the chain at ηκ is not exactly the chain at η, the SDE is), and each base floor with
its closed form; a low-noise control (σ₁ = 1, θ₀ = 3) is where the square-root rule must fail.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dynamics.errors import check
from dynamics.optim import build_optimizer
from dynamics.scaling import apply_scaling
from dynamics.sde import adaptive_stationary_loss, nqm_oracle, run_optimizer, sgd_moments

N_SAVES = 20  # saved points per part-3 run (matched in samples seen across batch sizes)
BLOCKS = 5
_NQM_CURVES: dict = {}  # compiled Monte Carlo curves by (optimizer, steps, save_every, paths, dim, dtype)


def nqm_paths(opt: str, hparams: dict, h, per_sample_std: float, theta0: float, steps: int,
              save_every: int, key, paths: int, dtype) -> np.ndarray:
    """Loss of ``paths`` NQM runs, saved every ``save_every`` steps: (paths, saves) float64.

    The optimizer hyperparameters, curvatures, noise and θ0 are traced arguments of one compiled
    function per (optimizer, steps, save_every, paths, dim, dtype): the cases that share a shape reuse
    its compilation (inject_hyperparams keeps the hyperparameters in the optimizer state).
    """
    batch = hparams["batch_size"]
    tx = build_optimizer(opt, **{k: v for k, v in hparams.items() if k != "batch_size"})
    hp = tx.init(jnp.zeros(len(h), dtype)).hyperparams
    sig = (opt, steps, save_every, paths, len(h), jnp.dtype(dtype).name)
    if sig not in _NQM_CURVES:
        def curve(hp, hj, s, th0, key, tx=tx):
            traced = optax.GradientTransformation(
                lambda p: tx.init(p)._replace(hyperparams=hp), tx.update)
            f = lambda th: 0.5 * jnp.sum(hj * th**2)  # noqa: E731
            out = jax.vmap(lambda k: run_optimizer(
                traced, nqm_oracle(hj, s), th0, num_steps=steps, key=k, save_every=save_every,
                observe=f))(jax.random.split(key, paths))
            return out.y

        _NQM_CURVES[sig] = jax.jit(curve)
    s = jnp.asarray(per_sample_std**2 * np.asarray(h) / batch, dtype)
    hj = jnp.asarray(h, dtype)
    ys = _NQM_CURVES[sig](hp, hj, s, jnp.full(hj.shape, theta0, dtype), key)
    return np.asarray(ys, np.float64)


def _blocks(a) -> list[np.ndarray]:
    a = np.asarray(a, np.float64)
    start = a.shape[-1] // 4
    return np.array_split(a[..., start:], BLOCKS, axis=-1)


def max_deviation(curve, base, blocks: int = BLOCKS) -> float:
    """Max over the last 75 % of training of |curve/base − 1|, on block means of the saved points.

    The saved points (matched in samples seen) after the first quarter are split into ``blocks``
    consecutive blocks and compared block by block, which averages the Monte Carlo noise of single
    points while keeping the shape of the curve.
    """
    start = len(base) // 4
    c, b = (np.array_split(np.asarray(a, np.float64)[start:], blocks) for a in (curve, base))
    return float(max(abs(ci.mean() / bi.mean() - 1.0) for ci, bi in zip(c, b)))


def block_ratios(paths, base_paths) -> tuple[np.ndarray, np.ndarray]:
    """Per block of the last 75 %: the ratio of the mean curves and its Monte Carlo standard error
    (delta method; the two path sets are independent)."""
    ratios, ses = [], []
    for c, b in zip(_blocks(paths), _blocks(base_paths)):
        x, y = c.mean(-1), b.mean(-1)  # per-path block means
        r = x.mean() / y.mean()
        ratios.append(r)
        ses.append(r * math.hypot(x.std(ddof=1) / math.sqrt(len(x)) / x.mean(),
                                  y.std(ddof=1) / math.sqrt(len(y)) / y.mean()))
    return np.array(ratios), np.array(ses)


def deviation_with_se(paths, base_paths) -> tuple[float, float]:
    """``max_deviation`` of the mean curves and the standard error of the block that attains it."""
    r, se = block_ratios(paths, base_paths)
    i = int(np.argmax(np.abs(r - 1.0)))
    return float(abs(r[i] - 1.0)), float(se[i])


def sgd_exact_curve(lr: float, h, s, theta0: float, steps) -> np.ndarray:
    """E f(θ_k) of the discrete SGD chain on the NQM at the steps ``steps`` (closed form)."""
    mean, var = sgd_moments(lr, h[None, :], s[None, :], theta0, np.asarray(steps)[:, None])
    return 0.5 * np.sum(h * (mean**2 + var), axis=-1)


CASES = (  # (label, optimizer, rule, low-noise control?)
    ("adam", "adam", "sqrt", False), ("adam", "adam", "linear", False),
    ("rmsprop", "rmsprop", "sqrt", False), ("rmsprop", "rmsprop", "linear", False),
    ("sgd", "gd", "linear", False), ("control", "adam", "sqrt", True))


def check_scaling_keys(c) -> None:
    """``sde.quadratic.scaling_steps`` and ``kappas`` give whole save intervals at every κ."""
    check(c.scaling_steps % N_SAVES == 0, "sde.quadratic.scaling_steps", c.scaling_steps,
          f"a multiple of {N_SAVES}")
    save0 = c.scaling_steps // N_SAVES
    for kappa in c.kappas:
        check(kappa > 0 and abs(save0 / kappa - round(save0 / kappa)) < 1e-9, "sde.quadratic.kappas",
              kappa, f"values with (scaling_steps/{N_SAVES})/kappa an integer")


def scaling_part(c, key) -> tuple[dict, dict]:
    """Square-root vs linear rule on the NQM, SGD baseline, and the low-noise control (``c``:
    ``sde.quadratic``)."""
    dtype = jnp.float32  # Monte Carlo error ≫ float32 rounding; twice as fast as float64
    check(c.scaling_steps % N_SAVES == 0, "sde.quadratic.scaling_steps", c.scaling_steps,
          f"a multiple of {N_SAVES}")
    h = np.logspace(0.0, math.log10(c.h_min), c.dim)
    save0 = c.scaling_steps // N_SAVES
    base_hp = {"adam": {"lr": c.base_lr, "b1": c.b1, "b2": c.b2, "eps": c.eps},
               "rmsprop": {"lr": c.base_lr, "b2": c.b2, "eps": c.eps},
               "gd": {"lr": c.base_lr * c.sgd_lr_factor, "weight_decay": 0.0}}
    bases, out, curves = {}, {"kappas": list(c.kappas), "runs": []}, {}
    samples0 = np.arange(N_SAVES + 1) * save0 * c.base_batch
    for index, (label, opt, rule, control) in enumerate(CASES):
        std, theta0 = (c.control_noise_std, c.control_theta0) if control else (c.scaling_noise_std, 1.0)
        hp0 = {**base_hp[opt], "batch_size": c.base_batch}
        if label not in bases:
            bases[label] = nqm_paths(opt, hp0, h, std, theta0, c.scaling_steps, save0,
                                     jax.random.fold_in(key, 1000 + index), c.scaling_paths, dtype)
            curves[f"{label} base"] = (samples0, bases[label].mean(0))
        for j, kappa in enumerate(c.kappas):
            hp = apply_scaling(rule, opt, hp0, kappa)
            save = int(round(save0 / kappa))
            check(abs(save0 / kappa - save) < 1e-9, "sde.quadratic.kappas", kappa,
                  f"values with (scaling_steps/{N_SAVES})/kappa an integer")
            paths = nqm_paths(opt, hp, h, std, theta0, save * N_SAVES, save,
                              jax.random.fold_in(key, 100 * index + j), c.scaling_paths, dtype)
            dev, se = deviation_with_se(paths, bases[label])
            run = {"case": label, "optimizer": opt, "rule": rule, "kappa": kappa, "lr": hp["lr"],
                   "batch_size": hp["batch_size"], "steps": save * N_SAVES,
                   "final_loss": float(paths[:, -1].mean()),
                   "base_final_loss": float(bases[label][:, -1].mean()),
                   "max_deviation": dev, "deviation_se": se}
            if opt == "gd":  # the discrete chain's own deviation under the linear rule (closed form)
                s0 = std**2 * h / c.base_batch
                k = np.arange(N_SAVES + 1)
                exact, exact_base = (sgd_exact_curve(hp["lr"], h, s0 / kappa, theta0, k * save),
                                     sgd_exact_curve(hp0["lr"], h, s0, theta0, k * save0))
                run["closed_form_deviation"] = max_deviation(exact, exact_base)
                r, r_se = block_ratios(paths, bases[label])
                r_exact = np.array([e.mean() / b.mean() for e, b in zip(_blocks(exact),
                                                                       _blocks(exact_base))])
                run["closed_form_z"] = float(np.max(np.abs(r - r_exact) / r_se))
            out["runs"].append(run)
            curves[f"{label} {rule} κ={kappa:g}"] = (samples0, paths.mean(0))
    out.update(floors(c, h, bases, base_hp))
    return out, curves


def floors(c, h, bases: dict, base_hp: dict) -> dict:
    """Each base floor (mean of the last quarter of saved points) against its closed form, with the
    Monte Carlo standard error of the relative error."""
    tail = np.arange(N_SAVES + 1)[-(N_SAVES // 4):] * (c.scaling_steps // N_SAVES)
    out = {}
    for label, opt in (("adam", "adam"), ("rmsprop", "rmsprop"), ("sgd", "gd")):
        hp = base_hp[opt]
        var_g = c.scaling_noise_std**2 * h / c.base_batch
        per_path = bases[label][:, -(N_SAVES // 4):].mean(-1)
        measured = float(per_path.mean())
        if opt == "gd":  # the discrete chain's stationary loss Σ ηs/(2(2 − ηh)); SDE: (η/4) tr Σ_B
            predicted = float(np.sum(hp["lr"] * var_g / (2.0 * (2.0 - hp["lr"] * h))))
            extra = {"predicted_sde": float(hp["lr"] * np.sum(var_g) / 4.0)}
        else:
            stationary = float(adaptive_stationary_loss(hp["lr"], var_g, c.eps))
            extra = {"predicted_stationary": stationary}
            predicted = stationary
            if opt == "rmsprop":
                # optax's rmsprop has no bias correction: v_k ≈ (1 − β2^k)·E g², so the effective
                # step is (1 − β2^k)^(-1/2) × larger while v warms up (quasi-static floor)
                predicted = float(np.mean(stationary / np.sqrt(1.0 - hp["b2"] ** tail)))
        se = float(per_path.std(ddof=1) / math.sqrt(len(per_path)) / predicted)
        out[f"floor_{label}"] = {"predicted": predicted, "measured": measured,
                                 "rel_error": abs(measured / predicted - 1.0), "rel_error_se": se,
                                 **extra}
    return out
