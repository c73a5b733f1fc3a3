"""The stability-threshold table on quadratics: each predicted threshold separates convergence from
divergence of the real optax update, with the preconditioner frozen and read back from the state."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dynamics.curvature import adaptive_preconditioner
from dynamics.optim import build_optimizer
from dynamics.optim.thresholds import (STABILITY, ema_threshold, not_applicable, stability_of,
                                       threshold_names)
from dynamics.optim import transforms

B2_FROZEN = 1.0 - 1e-6  # second moments move by ~0.3 % over the run
COUNT = 10 ** 9  # every bias correction is 1 and RAdam's rectification r_t = 1
NU = jnp.array([1.0, 0.25, 4.0])  # preset second moments (three different P's)
SHAPE = jnp.array([1.0, 0.6, 0.3])  # λ_i(P⁻¹H) ∝ SHAPE: the top one sets the threshold
X0, STEPS = 1e-6, 3000

# (table name, optax factory, kwargs); lr 0.1 throughout.
CASES = [
    ("gd", transforms.gd, {}),
    ("gd", transforms.gd, {"weight_decay": 2.0}),
    ("sgd", optax.sgd, {}),
    ("momentum", optax.sgd, {"momentum": 0.9}),
    ("sgd", optax.sgd, {"momentum": 0.5}),
    ("nesterov", optax.sgd, {"momentum": 0.9, "nesterov": True}),
    ("adam", optax.adam, {}),
    ("adam", optax.adam, {"b1": 0.7}),
    ("adamw", optax.adamw, {"weight_decay": 2.0}),
    ("nadam", optax.nadam, {}),
    ("nadamw", optax.nadamw, {"weight_decay": 1.0}),
    ("amsgrad", optax.amsgrad, {}),
    ("adabelief", optax.adabelief, {}),
    ("adabelief", optax.adabelief, {"nesterov": True}),
    ("yogi", optax.yogi, {}),
    ("radam", optax.radam, {}),
    ("adamax", optax.adamax, {}),
    ("adamaxw", optax.adamaxw, {"weight_decay": 1.0}),
    ("rmsprop", optax.rmsprop, {}),
    ("rmsprop", optax.rmsprop, {"momentum": 0.9}),
    ("rmsprop", optax.rmsprop, {"momentum": 0.9, "nesterov": True}),
    ("rmsprop", optax.rmsprop, {"eps_in_sqrt": False, "bias_correction": True}),
    ("adagrad", optax.adagrad, {}),
]
LR = 0.1


def _freeze(state):
    """Preset every second-moment field to NU, the step counters to COUNT, first moments to 0."""
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        fields = {}
        for f in state._fields:
            v = getattr(state, f)
            if f == "count" and jnp.ndim(v) == 0 and jnp.issubdtype(jnp.asarray(v).dtype, jnp.integer):
                fields[f] = jnp.asarray(COUNT, jnp.asarray(v).dtype)
            elif f in ("nu", "nu_max", "sum_of_squares") and isinstance(v, dict):
                fields[f] = {"w": NU.astype(v["w"].dtype)}
            elif f in ("mu", "trace") and isinstance(v, dict):
                fields[f] = jax.tree.map(jnp.zeros_like, v)
            else:
                fields[f] = _freeze(v)
        return state._replace(**fields)
    if isinstance(state, tuple):
        return tuple(_freeze(s) for s in state)
    return state


def _kwargs(name, factory, kw):
    kw = dict(kw)
    if name not in ("gd", "sgd", "momentum", "nesterov"):
        if "b2" in factory_params(factory):
            kw.setdefault("b2", B2_FROZEN)
        if "decay" in factory_params(factory):
            kw.setdefault("decay", B2_FROZEN)
    return kw


def factory_params(factory):
    import inspect
    return inspect.signature(factory).parameters


@pytest.mark.parametrize("name,factory,kw", CASES,
                         ids=[f"{c[0]}-{'-'.join(f'{k}={v}' for k, v in c[2].items())}"
                              for c in CASES])
def test_threshold_separates_convergence_from_divergence(x64, name, factory, kw):
    stab = stability_of(name)
    kw = _kwargs(name, factory, kw)
    tx = factory(LR, **kw)
    params = {"w": jnp.full((3,), X0)}
    state = _freeze(tx.init(params))
    hparams = {"learning_rate": LR, **kw}
    if stab.metric == "precond_sharpness":
        P = stab.preconditioner(state, hparams)["w"]
        assert P.shape == (3,) and bool(jnp.all(P > 0))
    else:
        assert stab.preconditioner is None
        P = jnp.ones(3)
    thr = float(stab.threshold(hparams, {}))

    def run(scale):
        h = scale * thr * P * SHAPE  # diag H with λ(P⁻¹H) = scale·thr·SHAPE

        def step(carry, _):
            p, s, peak = carry
            g = jax.tree.map(lambda w: h * w, p)
            u, s = tx.update(g, s, p)
            p = optax.apply_updates(p, u)
            return (p, s, jnp.maximum(peak, jnp.max(jnp.abs(p["w"])))), None

        (p, _, peak), _ = jax.lax.scan(step, (params, state, jnp.asarray(X0)), None, length=STEPS)
        return peak, jnp.max(jnp.abs(p["w"]))

    (peak_below, peak_above), (end_below, _) = jax.jit(jax.vmap(run))(jnp.array([0.97, 1.03]))
    # below: converges (no growth past 100 x0 on the way); above: grows past 1000 x0 while the
    # amplitude is still small enough for the preconditioner to stay frozen
    assert float(end_below) < X0 and float(peak_below) < 1e2 * X0, (name, kw, thr, end_below)
    assert not float(peak_above) <= 1e3 * X0, (name, kw, thr, peak_above)
    assert stab.label_for(hparams)


def _spectral_radius(kind, a, beta):
    """Scalar recurrences in (x, m) with the learning rate folded into a = ηλ(P⁻¹H)."""
    if kind == "heavy_ball":  # m' = βm + a x; x' = x − m'
        A = [[1 - a, -beta], [a, beta]]
    elif kind == "nesterov":  # m' = βm + a x; x' = x − (a x + β m')
        A = [[1 - a - beta * a, -beta * beta], [a, beta]]
    elif kind == "ema":  # m' = βm + (1−β) a x; x' = x − m'
        A = [[1 - (1 - beta) * a, -beta], [(1 - beta) * a, beta]]
    else:  # nadam: x' = x − (β m' + (1−β) a x)
        A = [[1 - beta * (1 - beta) * a - (1 - beta) * a, -beta * beta], [(1 - beta) * a, beta]]
    return np.max(np.abs(np.linalg.eigvals(np.array(A))))


@pytest.mark.parametrize("kind,name", [("heavy_ball", "momentum"), ("nesterov", "nesterov"),
                                       ("ema", "adam"), ("nadam", "nadam")])
def test_first_crossing_is_the_period_two_flip(kind, name):
    """Companion matrices: stable on the whole grid below a* = η·threshold, unstable just above."""
    stab = stability_of(name)
    for beta in (0.0, 0.3, 0.6, 0.9, 0.99):
        key = "momentum" if kind in ("heavy_ball", "nesterov") else "b1"
        a_star = LR * float(stab.threshold({"learning_rate": LR, key: beta}, {}))
        grid = np.linspace(1e-3, 1 - 1e-6, 400) * a_star
        assert all(_spectral_radius(kind, a, beta) < 1 for a in grid), (kind, beta)
        assert _spectral_radius(kind, a_star * (1 + 1e-4), beta) > 1, (kind, beta)


def test_known_values_and_labels():
    h = {"learning_rate": 0.01}
    assert float(stability_of("gd").threshold(h, {})) == pytest.approx(200.0)
    assert float(stability_of("adam").threshold(h, {})) == pytest.approx(3800.0)
    assert float(stability_of("nadam").threshold(h, {})) == pytest.approx(
        2 * 1.9 / (0.1 * 2.8 * 0.01))
    assert float(stability_of("momentum").threshold({**h, "momentum": 0.9}, {})) == pytest.approx(
        380.0)
    assert float(stability_of("nesterov").threshold({**h, "momentum": 0.9}, {})) == pytest.approx(
        3.8 / 2.8 / 0.01)
    assert float(stability_of("rmsprop").threshold({**h, "decay": 0.99}, {})) == pytest.approx(
        200.0)
    # adamw's default weight decay 1e-4 lowers 3800 by a factor (2 − 1e-6)/2
    assert float(stability_of("adamw").threshold(h, {})) == pytest.approx(3800 * (1 - 5e-7))
    assert ema_threshold(0.01, 0.9) == pytest.approx(3800.0)
    rows = {"grad_norm": np.array([1.0, 0.5])}
    np.testing.assert_allclose(stability_of("normalized_gd").threshold(h, rows), [200.0, 100.0])
    assert stability_of("sgd").label_for({"momentum": 0.9, "nesterov": True}) == "(2+2β)/((1+2β)η)"
    assert stability_of("sgd").label_for({}) == "2/η"
    assert stability_of("adam").label == "(2+2β1)/((1−β1)η)"
    for name in threshold_names():
        s = STABILITY[name]
        assert s.metric in ("sharpness", "precond_sharpness")
        assert (s.preconditioner is None) == (s.metric == "sharpness"), name
        assert s.derivation


def test_normalized_gd_is_gd_with_step_eta_over_grad_norm():
    g = {"w": jnp.array([3.0, 4.0])}
    tx = transforms.normalized_gd(0.5)
    u, _ = tx.update(g, tx.init(g))
    np.testing.assert_allclose(u["w"], -0.5 / 5.0 * g["w"], rtol=1e-6)


def test_unknown_names_are_not_applicable():
    for name in ("lion", "sign_sgd", "muon", "sam", "signum"):
        assert stability_of(name) is None
        assert not_applicable(name) == f"not applicable: no known threshold for {name}"
    for name in ("gd", "normalized_gd", "momentum", "nesterov", "adam", "adamw", "rmsprop",
                 "nadam", "amsgrad", "adabelief", "yogi", "radam"):
        assert not_applicable(name) is None


def test_preconditioner_reads_injected_states(x64):
    """Under inject_hyperparams (the trainer's optimizers) P matches curvature.adaptive_preconditioner
    (locuslab convention), and hyperparameters come from the injected state."""
    params = {"w": jnp.array([1.0, -2.0, 0.5])}
    grads = {"w": jnp.array([0.3, -0.1, 2.0])}
    tx = build_optimizer("adam", lr=0.1, b1=0.8, b2=0.99, eps=1e-3)
    state = tx.init(params)
    for _ in range(3):
        _, state = tx.update(grads, state, params)
    ours = stability_of("adam").preconditioner(state, {})
    theirs = adaptive_preconditioner(state, convention="locuslab")
    np.testing.assert_allclose(ours["w"], theirs["w"], rtol=1e-12)
    t = 3
    want = (1 - 0.8 ** t) * (jnp.sqrt(state.inner_state[0].nu["w"] / (1 - 0.99 ** t)) + 1e-3)
    np.testing.assert_allclose(ours["w"], want, rtol=1e-12)
    rms = build_optimizer("rmsprop", lr=0.1, b2=0.9, eps=1e-4)
    s = rms.init(params)
    _, s = rms.update(grads, s, params)
    np.testing.assert_allclose(stability_of("rmsprop").preconditioner(s, {})["w"],
                               jnp.sqrt(0.1 * grads["w"] ** 2 + 1e-4), rtol=1e-12)
