"""Structured eNTK (dynamics.ntk.structured) against an explicit float64 Jacobian oracle, J J^T:
dense layers and biases by Gram products, every other leaf by the fallback, on one model per rule."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from dynamics.ntk import NTKMLP, choose_method, empirical_ntk
from dynamics.ntk.empirical import _ntvp_block
from dynamics.ntk.structured import plan, structured_ntk


def oracle(apply_fn, params, x1, x2):
    """``K[i, j, a, b] = <J_a(x1_i), J_b(x2_j)>`` from dense Jacobians of the flat parameters."""
    flat, unravel = ravel_pytree(params)
    jac = jax.jit(jax.jacrev(lambda f, x: apply_fn(unravel(f), x)))  # jitted: eager is slow
    return np.einsum("iap,jbp->ijab", jac(flat, x1), jac(flat, x2))


def check(apply_fn, params, x1, x2, *, structured=None, fallback=None):
    """Every fallback kind (and the default call) equals the oracle; the plan is as expected."""
    the_plan = plan(apply_fn, params, x1)
    names = [jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_leaves_with_path(params)]
    if structured is not None:
        assert sorted(names[r.leaf] for r in the_plan.rules) == sorted(structured)
    if fallback is not None:
        assert sorted(names[i] for i in the_plan.fallback) == sorted(fallback)
    want = oracle(apply_fn, params, x1, x2)
    run = jax.jit(lambda p, a, b, fb: structured_ntk(apply_fn, p, a, b, fallback_block=fb),
                  static_argnums=3)
    for fb in (None, _ntvp_block) if the_plan.fallback else (None,):
        np.testing.assert_allclose(run(params, x1, x2, fb), want, rtol=1e-10, atol=1e-12)
    k = empirical_ntk(apply_fn, params, x1, x2, method="structured")
    np.testing.assert_allclose(k, want, rtol=1e-10, atol=1e-12)
    return the_plan


def normal(rng, *shape):
    return jnp.asarray(rng.standard_normal(shape) / np.sqrt(shape[0] if len(shape) > 1 else 1))


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = jnp.tanh(nn.Dense(7)(x))
        x = jax.nn.gelu(nn.Dense(5)(x))
        return nn.Dense(3)(x)


@pytest.fixture(scope="module")
def mlp():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        x1, x2 = normal(rng, 6, 4), normal(rng, 5, 4)
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64),
                              MLP().init(jax.random.key(0), x1))
        return MLP().apply, params, x1, x2


def test_flax_mlp_every_leaf_structured(mlp):
    with jax.enable_x64(True):
        apply_fn, params, x1, x2 = mlp
        the_plan = check(apply_fn, params, x1, x2, fallback=[])
        assert len(the_plan.rules) == 6 and not the_plan.row_rules()
        # each bias shares its layer's cotangent: one Gram per layer
        assert sorted(len(g) for g in the_plan.gram_groups().values()) == [2, 2, 2]


def test_default_call_picks_structured_and_keeps_its_options(mlp):
    with jax.enable_x64(True):
        apply_fn, params, x1, x2 = mlp
        assert choose_method(apply_fn, params, x1, x2) == "structured"
        k12, k11 = oracle(apply_fn, params, x1, x2), oracle(apply_fn, params, x1, x1)
        np.testing.assert_allclose(empirical_ntk(apply_fn, params, x1, x2), k12, rtol=1e-10)
        np.testing.assert_allclose(empirical_ntk(apply_fn, params, x1), k11, rtol=1e-10)
        traced = empirical_ntk(apply_fn, params, x1, x2, trace_axes=(-1,))
        np.testing.assert_allclose(traced, np.einsum("ijaa->ij", k12) / 3, rtol=1e-10)
        for x2_ in (x2, None):  # blocks of 4 (padded) on both sides
            chunked = empirical_ntk(apply_fn, params, x1, x2_, method="structured", batch_size=4)
            np.testing.assert_allclose(chunked, k12 if x2_ is not None else k11, rtol=1e-10)
        inside = jax.jit(lambda p, a, b: empirical_ntk(apply_fn, p, a, b))(params, x1, x2)
        np.testing.assert_allclose(inside, k12, rtol=1e-10)
        with pytest.raises(ValueError, match="per-example shapes"):
            empirical_ntk(apply_fn, params, x1, x2[:, :3], method="structured")


def test_conv_embedding_and_scaled_layers_fall_back():
    """A convolution kernel, an embedding table (gather) and an NTK-parameterized bias (a scale
    multiplied in) are no dense/bias rule: exact through the fallback, the rest structured."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        params = {"conv": normal(rng, 3, 2, 4), "emb": normal(rng, 5, 4), "w": normal(rng, 4, 3),
                  "b": normal(rng, 3)}

        def apply_fn(p, x):
            h = jax.lax.conv_general_dilated(x[..., None].repeat(2, -1), p["conv"], (1,), "SAME",
                                             dimension_numbers=("NWC", "WIO", "NWC"))
            h = jnp.tanh(h).mean(1) + p["emb"][jnp.argmax(x[:, :5], axis=1)]
            return h @ p["w"] + p["b"]

        x1, x2 = normal(rng, 4, 6), normal(rng, 3, 6)
        check(apply_fn, params, x1, x2, structured=["['b']", "['w']"],
              fallback=["['conv']", "['emb']"])

        model = NTKMLP(widths=(6,), out_dim=2, b_std=0.3)
        nparams = model.init(jax.random.key(0), x1)
        the_plan = check(model.apply, nparams, x1, x2)
        assert len(the_plan.rules) == 2 and len(the_plan.fallback) == 2  # kernels / biases


def test_weight_sharing_lhs_operand_and_jitted_sublayer():
    """A weight used twice falls back; ``W @ h.T`` (the leaf as left operand), ``h Bᵀ`` as an
    einsum and a layer inside a ``jax.jit`` function are structured; an unused leaf contributes
    nothing."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(2)
        params = {"shared": normal(rng, 4, 4), "left": normal(rng, 3, 4), "back": normal(rng, 4, 3),
                  "jitted": normal(rng, 4, 2), "unused": normal(rng, 2)}
        dense = jax.jit(lambda h, w: jnp.sin(h @ w))

        def apply_fn(p, x):
            h = jnp.tanh(x @ p["shared"])
            h = jnp.tanh(h @ p["shared"])
            h = (p["left"] @ h.T).T  # (N, 3)
            return dense(h @ p["left"], p["jitted"])

        x1, x2 = normal(rng, 4, 4), normal(rng, 3, 4)
        the_plan = check(apply_fn, params, x1, x2, fallback=["['left']", "['shared']"],
                         structured=["['jitted']"])
        assert the_plan.fallback  # "left" is used twice as well

        def apply2(p, x):
            h = (p["left"] @ jnp.tanh(x @ p["shared"]).T).T  # (N, 3)
            return dense(jnp.einsum("nc,dc->nd", jnp.tanh(h), p["back"]), p["jitted"])  # h Bᵀ

        check(apply2, params, x1, x2, fallback=[],
              structured=["['back']", "['jitted']", "['left']", "['shared']"])


def test_sequence_rows_and_batched_dot_general():
    """Per-example inputs with T = 5 rows: the dense kernel and bias form their Jacobian from the
    factors (row rules); a head-batched ``dot_general`` (a weight with a batch axis) falls back."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        params = {"w": normal(rng, 4, 6), "b": normal(rng, 6), "heads": normal(rng, 2, 3, 3),
                  "out": normal(rng, 6, 2)}

        def apply_fn(p, x):  # x: (N, T, 4)
            h = jnp.tanh(x @ p["w"] + p["b"])  # (N, T, 6)
            n, t = h.shape[:2]
            h = h.reshape(n, t, 2, 3)
            h = jnp.einsum("nthd,hde->nthe", h, p["heads"]).reshape(n, t, 6)
            return jnp.mean(jnp.tanh(h), axis=1) @ p["out"]

        x1, x2 = normal(rng, 3, 5, 4), normal(rng, 4, 5, 4)
        the_plan = check(apply_fn, params, x1, x2, structured=["['b']", "['out']", "['w']"],
                         fallback=["['heads']"])
        assert len(the_plan.row_rules()) == 2
