"""Contract test over every optax alias the trainer can run (the style of optax's alias_test table):
a few steps on a quadratic and on a small MLP (finite; decreasing where the method promises it),
injected == plain, vmap over the learning rate == separate runs, and a state that round-trips through
flatten / numpy / unflatten continues identically."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dynamics.errors import ConfigError
from dynamics.optim.aliases import (ALIASES, HELPERS, alias_names, build_alias, extra_args_for,
                                    get_alias, static_args_of, traced_hyperparams)

K = 8  # steps per phase
# learning rate per alias (default 0.05) and extra arguments: small problems, a few steps.
LR = {"sign_sgd": 0.01, "signum": 0.01, "lion": 0.01, "rprop": 0.01, "lars": 1.0, "fromage": 0.05,
      "adadelta": 1.0, "cocob": None, "dog": None, "dowg": None, "prodigy": None,
      "dadapt_adamw": None, "polyak_sgd": 0.5, "momo": 0.05, "momo_adam": 0.05, "lbfgs": 1.0,
      "sophia": 0.05, "novograd": 0.05, "sm3": 0.2, "adagrad": 0.2}
KWARGS = {"galore": {"rank": 1, "update_proj_gap": 2}, "sophia": {"update_interval": 2}}
# No descent promised within a few steps: parameter-free methods start from tiny step estimates
# (dog, dowg, prodigy, dadapt_adamw, cocob); adadelta's effective step starts at √eps.
NO_DESCENT_PROMISE = {"dog", "dowg", "prodigy", "dadapt_adamw", "cocob", "adadelta"}
RUNNABLE = alias_names()
# Tiny graphs, many of them: skip the expensive backend passes (compilation dominates this file).
FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}

H = jnp.array([1.0, 3.0])
X_MLP = jax.random.normal(jax.random.key(0), (16, 3))
Y_MLP = jnp.sin(X_MLP @ jnp.array([[1.0], [-0.5], [0.3]]))


def quadratic_loss(p, data=None):
    return 0.5 * jnp.sum(H * p["w"] ** 2) + 0.5 * jnp.sum(H * p["b"] ** 2)


def quadratic_init():
    return {"w": jnp.array([[1.0, -0.5], [0.3, 0.8], [-1.0, 0.2]]), "b": jnp.array([0.5, -1.0])}


def mlp_loss(p, data):
    x, y = data
    f = jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"]
    return 0.5 * jnp.mean(jnp.sum((f - y) ** 2, axis=-1))


def mlp_init():
    k1, k2 = jax.random.split(jax.random.key(1))
    return {"w1": jax.random.normal(k1, (3, 8)) / jnp.sqrt(3.0), "b1": jnp.zeros(8),
            "w2": jax.random.normal(k2, (8, 1)) / jnp.sqrt(8.0)}


def make_tx(name, lr, inject):
    spec = get_alias(name)
    kw = dict(KWARGS.get(name, {}))
    if inject:
        return build_alias(name, lr, **kw)
    if lr is not None:
        kw[spec.lr_arg] = lr
    if name == "noisy_sgd":
        kw["key"] = 0
    return spec.factory(**kw)


def run(name, lr, loss, params, state, data, steps, inject=True):
    """``steps`` updates; returns (params, state, losses before each step)."""
    tx = make_tx(name, lr, inject)
    if state is None:
        state = tx.init(params)

    def step(carry, _):
        p, s = carry
        loss_fn = lambda q: loss(q, data)  # noqa: E731  (a function of params only)
        value, g = jax.value_and_grad(loss_fn)(p)
        u, s = tx.update(g, s, p, **extra_args_for(name, value=value, grad=g, loss_fn=loss_fn))
        return (optax.apply_updates(p, u), s), value

    (params, state), losses = jax.lax.scan(step, (params, state), None, length=steps)
    return params, state, losses


def to_numpy_and_back(tree):
    """What a checkpoint does: leaves to numpy (typed PRNG keys via key_data), then rebuild."""
    leaves, treedef = jax.tree.flatten(tree)
    saved = []
    for leaf in leaves:
        if jax.dtypes.issubdtype(jnp.asarray(leaf).dtype, jax.dtypes.prng_key):
            saved.append(("key", np.asarray(jax.random.key_data(leaf))))
        else:
            saved.append(("array", np.asarray(leaf)))
    rebuilt = [jax.random.wrap_key_data(jnp.asarray(a)) if kind == "key" else jnp.asarray(a)
               for kind, a in saved]
    return jax.tree.unflatten(treedef, rebuilt)


@pytest.mark.slow  # make test-all (48 aliases, ~60 s of CPU); tests/test_optimizer_args.py runs aliases in the trainer
@pytest.mark.parametrize("name", RUNNABLE)
def test_alias_contract(name):
    lr0 = LR.get(name, 0.05)
    lrs = None if lr0 is None else jnp.array([lr0, 0.5 * lr0])

    @jax.jit(compiler_options=FAST)
    def phase1(lrs):
        def one(lr, inject, loss, params, data):
            return run(name, lr, loss, params, None, data, K, inject)

        if lrs is None:
            vm = jax.tree.map(lambda a: a[None], one(None, True, quadratic_loss,
                                                      quadratic_init(), None))
            plain = jax.tree.map(lambda a: a[None], one(None, False, quadratic_loss,
                                                         quadratic_init(), None))
            lr_first = None
        else:
            vm = jax.vmap(lambda lr: one(lr, True, quadratic_loss, quadratic_init(), None))(lrs)
            plain = jax.vmap(lambda lr: one(lr, False, quadratic_loss, quadratic_init(), None))(lrs)
            lr_first = lrs[0]
        mlp = one(lr_first, True, mlp_loss, mlp_init(), (X_MLP, Y_MLP))
        return vm, plain, mlp

    vm, plain, mlp = phase1(lrs)
    q_losses = np.asarray(vm[2])
    m_losses = np.asarray(mlp[2])
    assert np.all(np.isfinite(q_losses)) and np.all(np.isfinite(m_losses)), name
    # injected and vmapped over the learning rate == the plain alias at each learning rate
    np.testing.assert_allclose(q_losses, np.asarray(plain[2]), rtol=2e-4, atol=1e-6, err_msg=name)
    if lrs is not None:
        assert not np.allclose(q_losses[0], q_losses[1]), name  # the lanes differ
    if name not in NO_DESCENT_PROMISE:
        assert q_losses[0, -1] < q_losses[0, 0], (name, q_losses[0])
        assert m_losses[-1] < m_losses[0], (name, m_losses)
    # the learning rate is traced: it sits in the injected state
    state = jax.tree.map(lambda a: a[0], vm[1])
    spec = get_alias(name)
    if lrs is not None:
        assert spec.lr_arg in state.hyperparams
        assert float(state.hyperparams[spec.lr_arg]) == pytest.approx(float(lrs[0]))
    # checkpoint round trip: continued updates are identical
    params = jax.tree.map(lambda a: a[0], vm[0])
    # (the tx is rebuilt with the same arguments; the injected state carries the hyperparameters)
    cont = jax.jit(lambda p, s: run(name, lr0, quadratic_loss, p, s, None, K // 2)[2],
                   compiler_options=FAST)
    want = cont(params, state)
    got = cont(to_numpy_and_back(params), to_numpy_and_back(state))
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=name)


def test_table_covers_optax_and_classifies_every_alias():
    names = set(ALIASES)
    core = {"adabelief", "adadelta", "adafactor", "adagrad", "adam", "adamax", "adamaxw", "adamw",
            "adan", "amsgrad", "fromage", "lamb", "lars", "lbfgs", "lion", "nadam", "nadamw",
            "noisy_sgd", "novograd", "optimistic_adam", "optimistic_adam_v2",
            "optimistic_gradient_descent", "polyak_sgd", "radam", "rmsprop", "rprop", "sgd",
            "sign_sgd", "signum", "sm3", "yogi"}
    contrib = {"acprop", "ademamix", "adopt", "cocob", "dadapt_adamw", "dog", "dowg", "dpsgd",
               "galore", "madgrad", "mechanize", "momo", "momo_adam", "muon", "prodigy",
               "reduce_on_plateau", "sam", "schedule_free", "schedule_free_adamw",
               "schedule_free_sgd", "simplified_ademamix", "sophia"}
    assert core | contrib | {"lookahead"} == names
    assert not names & set(HELPERS)
    assert set(alias_names("unsupported")) == {"sam", "dpsgd", "mechanize", "schedule_free",
                                                "reduce_on_plateau", "lookahead"}
    assert {n: ALIASES[n].extra_args for n in alias_names("extra_args")} == {
        "lbfgs": ("value", "grad", "value_fn"), "momo": ("value",), "momo_adam": ("value",),
        "polyak_sgd": ("value",), "sophia": ("obj_fn",)}
    for spec in ALIASES.values():
        assert spec.status != "unsupported" or spec.reason
        assert spec.module == ("optax.contrib" if spec.name in contrib else "optax")
    assert get_alias("polyak_sgd").lr_arg == "max_learning_rate"
    assert get_alias("nadam").args["nesterov"] is True  # a functools.partial of adam


def test_unknown_argument_and_unsupported_alias_fail_in_one_line():
    with pytest.raises(ConfigError) as err:
        build_alias("lion", 0.1, b3=0.5)
    msg = str(err.value)
    assert "\n" not in msg and "optimizer.args.b3" in msg
    assert "allowed b1, b2, mu_dtype, weight_decay, mask" in msg
    with pytest.raises(ConfigError, match="cannot run in this trainer: two-gradient step"):
        build_alias("sam", 0.1)
    with pytest.raises(ConfigError, match="not a known optax optimizer"):
        build_alias("shampoo", 0.1)


def test_numeric_arguments_are_traced_and_callables_static():
    assert set(traced_hyperparams("adam")) == {"learning_rate", "b1", "b2", "eps", "eps_root"}
    assert "weight_decay" in traced_hyperparams("adamw", weight_decay=0.1)
    assert static_args_of("adopt") == ("clip_value_fn",)
    assert static_args_of("adamw", {"mask": lambda p: p}) == ("mask",)
    # a callable mask stays a mask (not a schedule): weight decay acts on the masked leaf only
    params = {"a": jnp.ones(2), "b": jnp.ones(2)}
    zero = jax.tree.map(jnp.zeros_like, params)
    tx = build_alias("adamw", 0.1, weight_decay=0.5,
                     mask=lambda p: {"a": True, "b": False})
    u, _ = tx.update(zero, tx.init(params), params)
    np.testing.assert_allclose(u["a"], -0.05 * np.ones(2), rtol=1e-6)
    np.testing.assert_allclose(u["b"], 0.0)
    # b1 is vmappable
    def first_update(b1):
        t = build_alias("adam", 0.1, b1=b1)
        return t.update({"w": jnp.ones(1)}, t.init({"w": jnp.ones(1)}), {"w": jnp.ones(1)})[0]["w"]

    out = jax.vmap(first_update)(jnp.array([0.5, 0.9]))
    assert out.shape == (2, 1) and np.all(np.isfinite(np.asarray(out)))
    assert inspect.signature(build_alias).parameters["learning_rate"].kind is (
        inspect.Parameter.POSITIONAL_ONLY)
