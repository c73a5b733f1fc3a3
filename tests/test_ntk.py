"""dynamics.ntk against independent oracles: explicit Jacobians, golden values (papers/ntk.md
T1-T10), Monte-Carlo wide networks, explicit gradient descent, numpy / scikit-learn solvers."""

from types import SimpleNamespace

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from dynamics import ntk

# --- Models ---------------------------------------------------------------------------------------


class MLP(nn.Module):
    """A small Flax MLP with mixed activations (tanh, then erf)."""

    widths: tuple = (16, 12)
    out_dim: int = 3

    @nn.compact
    def __call__(self, x):
        x = jnp.tanh(nn.Dense(self.widths[0])(x))
        x = jax.scipy.special.erf(nn.Dense(self.widths[1])(x))
        return nn.Dense(self.out_dim)(x)


def _f64(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


def _flax_mlp(seed, n1=5, n2=4, d_in=4, out_dim=3, widths=(16, 12)):
    """Flax MLP with float64 params and two float64 input batches (call under enable_x64).

    Parameters and inputs are drawn with NumPy (no per-shape PRNG compilation): weights
    ~ N(0, 1/fan_in), biases ~ N(0, 1/fan_out).
    """
    rng = np.random.default_rng(seed)
    model = MLP(widths=widths, out_dim=out_dim)
    x1 = jnp.asarray(rng.standard_normal((n1, d_in)))
    x2 = jnp.asarray(rng.standard_normal((n2, d_in)))
    shapes = jax.eval_shape(model.init, jax.random.key(0), x1)
    params = jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s.shape) / np.sqrt(s.shape[0])),
                          shapes)
    return model.apply, params, x1, x2


def _k(kernel_fn, apply_fn, params, x1, x2=None, **kwargs):
    """``kernel_fn(apply_fn, params, x1, x2, **kwargs)`` under one ``jax.jit`` (eager is slow)."""
    return jax.jit(lambda p, a, b: kernel_fn(apply_fn, p, a, b, **kwargs))(params, x1, x2)


@pytest.fixture(scope="module")
def mlp():
    """A Flax MLP (4 -> 16 tanh -> 12 erf -> 3, P = 323) in float64 with explicit J J^T oracles."""
    with jax.enable_x64(True):
        apply_fn, params, x1, x2 = _flax_mlp(0)
        j1 = _explicit_jacobian(apply_fn, params, x1)
        j2 = _explicit_jacobian(apply_fn, params, x2)
        return SimpleNamespace(
            apply_fn=apply_fn, params=params, x1=x1, x2=x2, j1=j1, j2=j2,
            k11=jnp.einsum("iap,jbp->ijab", j1, j1), k12=jnp.einsum("iap,jbp->ijab", j1, j2))


def _golden_mlp():
    """The T1 model of papers/ntk.md: tanh(x W1 + b1) W2 + b2, P = 17 (call under enable_x64)."""
    params = {
        "W1": jnp.array([[0.5, -1.0, 0.25], [1.5, 0.5, -0.75]]),
        "b1": jnp.array([0.1, -0.2, 0.3]),
        "W2": jnp.array([[1.0, -0.5], [0.5, 0.25], [-1.5, 1.0]]),
        "b2": jnp.array([0.05, -0.05]),
    }
    x = jnp.array([[1.0, 2.0], [-0.5, 0.3], [0.0, -1.0]])

    def apply_fn(p, x):
        return jnp.tanh(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]

    return apply_fn, params, x


def _explicit_jacobian(apply_fn, params, x):
    """Oracle: ``jax.jacobian`` of the batched output w.r.t. the raveled parameters, (N, O, P)."""
    flat, unravel = ravel_pytree(params)
    return jax.jit(jax.jacobian(lambda v, x: apply_fn(unravel(v), x)))(flat, x)


def _relerr(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(np.ravel(a - b)) / np.linalg.norm(np.ravel(b)))


# --- Empirical NTK --------------------------------------------------------------------------------

_T1 = {
    (0, 0): [[6.73562341823, -1.151931000127], [-1.151931000127, 4.15935680836]],
    (0, 1): [[2.5824976942, -0.6380041596], [-0.6380041596, 1.7963755479]],
    (0, 2): [[-0.89227679956, 0.188083293028], [0.188083293028, -0.557405699369]],
    (1, 1): [[5.613898718555, -2.447910529953], [-2.447910529953, 2.935820196044]],
    (2, 2): [[3.735390442593, -0.399445209551], [-0.399445209551, 3.136349808468]],
}
_T1_LOGIT_SUM = [[10.8949802266, 4.3788732421, -1.4496824989],
                 [4.3788732421, 8.5497189146, 2.0655734826],
                 [-1.4496824989, 2.0655734826, 6.8717402511]]


@pytest.mark.parametrize("method", ["jacobian", "ntvp"])
def test_entk_matches_neural_tangents_golden(method):
    with jax.enable_x64(True):
        apply_fn, params, x = _golden_mlp()
        for batch_size in (None, 2):
            k = _k(ntk.empirical_ntk, apply_fn, params, x, method=method, batch_size=batch_size)
            assert k.shape == (3, 3, 2, 2) and k.dtype == jnp.float64
            for (i, j), block in _T1.items():
                np.testing.assert_allclose(k[i, j], block, rtol=1e-10, atol=1e-10)
                np.testing.assert_allclose(k[j, i], np.transpose(block), rtol=1e-10, atol=1e-10)
        # neural-tangents' trace_axes=(-1,) is the MEAN over the O = 2 logits: half the logit sum.
        k_tr = _k(ntk.empirical_ntk, apply_fn, params, x, method=method, trace_axes=(-1,))
        np.testing.assert_allclose(k_tr, np.asarray(_T1_LOGIT_SUM) / 2, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("method", ["jacobian", "ntvp"])
def test_entk_equals_explicit_jjt(mlp, method):
    with jax.enable_x64(True):
        k12 = _k(ntk.empirical_ntk, mlp.apply_fn, mlp.params, mlp.x1, mlp.x2, method=method)
        assert k12.shape == (5, 4, 3, 3)
        assert _relerr(k12, mlp.k12) < 1e-13
        k11 = _k(ntk.empirical_ntk, mlp.apply_fn, mlp.params, mlp.x1, method=method)
        assert k11.shape == (5, 5, 3, 3)
        assert _relerr(k11, mlp.k11) < 1e-13
        # Symmetric PSD once flattened to (N O, N O) (N O = 15 < P = 323).
        m = np.asarray(jnp.transpose(k11, (0, 2, 1, 3)).reshape(15, 15))
        assert np.max(np.abs(m - m.T)) <= 1e-12 * np.max(np.abs(m))
        eig = np.linalg.eigvalsh(m)
        assert eig[0] >= -1e-10 * eig[-1]


@pytest.mark.parametrize("method", ["jacobian", "ntvp"])
def test_chunked_equals_unchunked(mlp, method):
    with jax.enable_x64(True):
        # 5 and 4 examples in blocks of 2: padded last blocks on both sides.
        chunked = _k(ntk.empirical_ntk, mlp.apply_fn, mlp.params, mlp.x1, mlp.x2, method=method,
                     batch_size=2)
        assert chunked.shape == mlp.k12.shape
        assert _relerr(chunked, mlp.k12) < 1e-13
        sym = _k(ntk.empirical_ntk, mlp.apply_fn, mlp.params, mlp.x1, method=method, batch_size=3)
        assert _relerr(sym, mlp.k11) < 1e-13


def test_trace_axes_is_mean_over_logits(mlp):
    with jax.enable_x64(True):
        logit_sum = jnp.einsum("ijaa->ij", mlp.k12)  # O = 3
        for method in ("jacobian", "ntvp"):
            traced = _k(ntk.empirical_ntk, mlp.apply_fn, mlp.params, mlp.x1, mlp.x2, method=method,
                        trace_axes=(-1,))
            assert traced.shape == (5, 4)
            assert _relerr(traced, logit_sum / 3) < 1e-13
            assert _relerr(traced, logit_sum) > 0.5  # not the sum
        with pytest.raises(ValueError, match="trace_axes"):
            ntk.empirical_ntk(mlp.apply_fn, mlp.params, mlp.x1, trace_axes=(0,))
        with pytest.raises(ValueError, match="method"):
            ntk.empirical_ntk(mlp.apply_fn, mlp.params, mlp.x1, method="unknown")


def test_entk_swap_and_leaf_order(mlp):
    with jax.enable_x64(True):
        k21 = _k(ntk.empirical_ntk, mlp.apply_fn, mlp.params, mlp.x2, mlp.x1)
        np.testing.assert_allclose(k21, jnp.transpose(mlp.k12, (1, 0, 3, 2)), rtol=1e-12,
                                   atol=1e-12)
        # Reordering the parameter pytree's leaves does not change the kernel.
        leaves, treedef = jax.tree.flatten(mlp.params)
        reordered = {"p": list(reversed(leaves))}

        def apply_reordered(p, x):
            return mlp.apply_fn(jax.tree.unflatten(treedef, list(reversed(p["p"]))), x)

        k = _k(ntk.empirical_ntk, apply_reordered, reordered, mlp.x1, method="ntvp")
        assert _relerr(k, mlp.k11) < 1e-13


def test_entk_jits_float32(mlp):
    params32 = jax.tree.map(lambda a: a.astype(jnp.float32), mlp.params)
    x1, x2 = mlp.x1.astype(jnp.float32), mlp.x2.astype(jnp.float32)
    for method in ("jacobian", "ntvp"):
        @jax.jit
        def kernel(params, x1, x2):
            return ntk.empirical_ntk(mlp.apply_fn, params, x1, x2, method=method, batch_size=3)

        k = kernel(params32, x1, x2)
        assert k.dtype == jnp.float32 and k.shape == (5, 4, 3, 3)
        assert _relerr(k, mlp.k12) < 1e-5


def test_entk_pytree_inputs(mlp):
    """Inputs may be a pytree of arrays sharing the leading example axis."""
    with jax.enable_x64(True):

        def apply_dict(p, x):
            return mlp.apply_fn(p, x["a"] + x["b"][:, None])

        shift = jnp.linspace(-1.0, 1.0, 5)
        xd = {"a": mlp.x1 - shift[:, None], "b": shift}
        k = _k(ntk.empirical_ntk, apply_dict, mlp.params, xd, method="ntvp", batch_size=2)
        assert _relerr(k, mlp.k11) < 1e-13


# --- Sign kernels ---------------------------------------------------------------------------------


def test_sign_kernels_vs_explicit(mlp):
    with jax.enable_x64(True):
        apply_fn, params, x1, x2, j1, j2 = mlp.apply_fn, mlp.params, mlp.x1, mlp.x2, mlp.j1, mlp.j2
        sgn = _k(ntk.sign_kernel, apply_fn, params, x1, x2, batch_size=3)
        np.testing.assert_allclose(sgn, jnp.einsum("iap,jbp->ijab", jnp.sign(j1), jnp.sign(j2)),
                                   rtol=1e-12, atol=1e-12)
        asym = _k(ntk.asymmetric_sign_kernel, apply_fn, params, x1, x2, batch_size=2)
        oracle = jnp.einsum("iap,jbp->ijab", j1, jnp.sign(j2))
        assert _relerr(asym, oracle) < 1e-13
        asym_tr = _k(ntk.asymmetric_sign_kernel, apply_fn, params, x1, x2, trace_axes=(-1,))
        assert _relerr(asym_tr, jnp.einsum("ijaa->ij", oracle) / 3) < 1e-13
        # A-SignGD diagonal = ||grad f_a(x_i)||_1.
        diag = _k(ntk.asymmetric_sign_kernel, apply_fn, params, x1)
        np.testing.assert_allclose(jnp.einsum("iiaa->ia", diag), jnp.sum(jnp.abs(j1), -1),
                                   rtol=1e-13)


def test_sign_kernels_golden():
    with jax.enable_x64(True):
        apply_fn, params, x = _golden_mlp()
        sgn = _k(ntk.sign_kernel, apply_fn, params, x)
        np.testing.assert_array_equal(jnp.einsum("iiaa->ia", sgn), [[13, 13], [13, 13], [10, 10]])
        m = np.asarray(jnp.transpose(sgn, (0, 2, 1, 3)).reshape(6, 6))
        np.testing.assert_array_equal(m, m.T)
        assert np.linalg.eigvalsh(m)[0] >= -1e-10 * np.abs(m).max()
        ka = _k(ntk.asymmetric_sign_kernel, apply_fn, params, x)
        np.testing.assert_allclose(ka[0, 1], [[4.8660855457, -0.4030839064],
                                              [-0.4279024717, 3.9298611281]], rtol=1e-10)
        np.testing.assert_allclose(ka[1, 0], [[3.1772870363, -1.6003140706],
                                              [-0.9996578675, 2.2478303414]], rtol=1e-10)
        flat = jnp.transpose(ka, (0, 2, 1, 3)).reshape(6, 6)
        np.testing.assert_allclose(jnp.max(jnp.abs(flat - flat.T)), 3.48, atol=5e-3)

        def binary(p, x):
            out = apply_fn(p, x)
            return out[:, 1:] - out[:, :1]

        k_sgd = _k(ntk.empirical_ntk, binary, params, x)[:, :, 0, 0]
        np.testing.assert_allclose(k_sgd, [[13.1988422268, 5.6548815614, -1.825849085],
                                           [5.6548815614, 13.4455399745, 2.9271302578],
                                           [-1.825849085, 2.9271302578, 7.6706306702]], rtol=1e-10)
        k_asym = _k(ntk.asymmetric_sign_kernel, binary, params, x)[:, :, 0, 0]
        np.testing.assert_allclose(k_asym, [[11.3774773157, 7.8349036908, -2.4583675188],
                                            [5.0963168859, 10.8558790589, 3.3240363211],
                                            [-0.1255804574, -2.5430515659, 9.4527728339]],
                                   rtol=1e-10)
        # Scaling f by c scales the A-SignGD kernel by c and the SGD kernel by c^2.
        scaled = lambda p, x: 3.0 * binary(p, x)  # noqa: E731
        np.testing.assert_allclose(_k(ntk.asymmetric_sign_kernel, scaled, params, x)[:, :, 0, 0],
                                   3.0 * k_asym, rtol=1e-12)
        np.testing.assert_allclose(_k(ntk.empirical_ntk, scaled, params, x)[:, :, 0, 0],
                                   9.0 * k_sgd,
                                   rtol=1e-12)


def test_one_step_semantics_of_sgd_and_sign_kernels():
    """One step on x_train changes f(x_eval) by -eta K(x_eval, x_train) + O(eta^2) (T5)."""
    with jax.enable_x64(True):
        apply_fn, params, x = _golden_mlp()

        def f(p, x):
            out = apply_fn(p, x)
            return out[:, 1:] - out[:, :1]

        x_tr, x_te = x[:1], x[1:2]
        eta = 1e-6

        @jax.jit
        def rates(params, x_tr, x_te):
            """(f(x_te; θ1) - f(x_te; θ0)) / (-η) after one SGD and one SignGD step on x_tr."""
            grad_tr = jax.grad(lambda p: f(p, x_tr)[0, 0])(params)
            out = []
            for direction in (grad_tr, jax.tree.map(jnp.sign, grad_tr)):
                stepped = jax.tree.map(lambda p, d: p - eta * d, params, direction)
                out.append((f(stepped, x_te)[0, 0] - f(params, x_te)[0, 0]) / (-eta))
            return out

        rate_sgd, rate_sign = rates(params, x_tr, x_te)
        k_sgd = _k(ntk.empirical_ntk, f, params, x_te, x_tr)[0, 0, 0, 0]
        k_asym = _k(ntk.asymmetric_sign_kernel, f, params, x_te, x_tr)
        k_wrong = _k(ntk.asymmetric_sign_kernel, f, params, x_tr, x_te)
        np.testing.assert_allclose(rate_sgd, k_sgd, rtol=1e-4)
        np.testing.assert_allclose(rate_sign, k_asym[0, 0, 0, 0], rtol=1e-4)
        assert abs(rate_sign - k_wrong[0, 0, 0, 0]) > 1.0
        np.testing.assert_allclose(k_sgd, 5.6548815614, rtol=1e-10)
        np.testing.assert_allclose(k_asym[0, 0, 0, 0], 5.0963168859, rtol=1e-10)
        np.testing.assert_allclose(k_wrong[0, 0, 0, 0], 7.8349036908, rtol=1e-10)


# --- Infinite width -------------------------------------------------------------------------------

_T7_DEPTH2 = {
    ("relu", "nngp"): [[0.983125, 0.729041234, 0.8721166971], [0.983125, 1.0521570964],
                       [5.0173046875]],
    ("relu", "ntk"): [[2.918125, 1.5270287097, 0.8551278793], [2.918125, 1.3705427191],
                      [15.0206640625]],
    ("erf", "nngp"): [[1.0276152583, 0.5673558916, -0.3637004004], [1.0276152583, -0.0520372623],
                      [1.2442931998]],
    ("erf", "ntk"): [[3.6837459948, 1.7596144994, -1.1508484341], [3.6837459948, -0.184574853],
                     [5.8407346328]],
}


def _symmetric_from_rows(rows):
    n = len(rows)
    m = np.zeros((n, n))
    for i, row in enumerate(rows):
        m[i, i:] = row
        m[i:, i] = row
    return m


@pytest.mark.parametrize("activation,nngp,ntk_value", [
    ("relu", 0.11292459462775, 0.18340787109767),
    ("erf", 0.15429489291810, 0.31168365733770),
])
def test_infinite_width_depth1_golden(activation, nngp, ntk_value):
    with jax.enable_x64(True):
        x1 = jnp.array([[1.0, 0.0, 0.0]])
        x2 = jnp.array([[0.6, 0.8, 0.0]])
        k = ntk.infinite_width_kernels(x1, x2, depth=1, activation=activation, w_std=1.0)
        np.testing.assert_allclose(k.nngp[0, 0], nngp, rtol=1e-12)
        np.testing.assert_allclose(k.ntk[0, 0], ntk_value, rtol=1e-12)


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_infinite_width_depth2_golden(activation):
    with jax.enable_x64(True):
        x = jnp.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [-1.0, 0.5, 2.0]])
        fn = jax.jit(lambda x1, x2, w, b: ntk.infinite_width_kernels(
            x1, x2, depth=2, activation=activation, w_std=w, b_std=b))
        k = fn(x, x, 1.5, 0.1)
        for name in ("nngp", "ntk"):
            np.testing.assert_allclose(getattr(k, name),
                                       _symmetric_from_rows(_T7_DEPTH2[(activation, name)]),
                                       rtol=1e-9, atol=1e-10)
        k_none = ntk.infinite_width_kernels(x, depth=2, activation=activation, w_std=1.5, b_std=0.1)
        np.testing.assert_allclose(k_none.ntk, k.ntk, rtol=1e-14)
        k_rect = ntk.infinite_width_kernels(x[:2], x[1:], depth=2, activation=activation,
                                            w_std=1.5, b_std=0.1)
        np.testing.assert_allclose(k_rect.ntk, k.ntk[:2, 1:], rtol=1e-14)
        with pytest.raises(ValueError, match="activation"):
            ntk.infinite_width_kernels(x, depth=2, activation="tanh")


def test_infinite_width_linear_closed_form():
    """depth 0 (one Dense layer): NNGP = NTK = w^2 x.x'/d + b^2."""
    with jax.enable_x64(True):
        x = jnp.array([[1.0, -2.0], [0.5, 3.0]])
        k = ntk.infinite_width_kernels(x, depth=0, w_std=2.0, b_std=0.5)
        oracle = 4.0 * (x @ x.T) / 2 + 0.25
        np.testing.assert_allclose(k.nngp, oracle, rtol=1e-14)
        np.testing.assert_allclose(k.ntk, oracle, rtol=1e-14)


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_wide_network_entk_converges_to_infinite_width(activation):
    """Monte Carlo (T8): eNTK of a random NTK-parameterized MLP -> analytic NTK as width grows."""
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(99).standard_normal((8, 10)))
        theory = ntk.infinite_width_kernels(x, depth=2, activation=activation, w_std=1.5,
                                            b_std=0.1).ntk
        errors = {}
        for width in (64, 1024):
            model = ntk.NTKMLP(widths=(width, width), out_dim=1, activation=activation,
                               w_std=1.5, b_std=0.1)
            shapes = jax.eval_shape(model.init, jax.random.key(0), x)
            kernel = jax.jit(lambda p, x: ntk.empirical_ntk(model.apply, p, x, trace_axes=(-1,)))
            errs = []
            for seed in range(3):
                # All parameters ~ N(0, 1) (NTK parameterization), drawn on the host: no compile.
                rng = np.random.default_rng(seed)
                params = jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s.shape)), shapes)
                errs.append(_relerr(kernel(params, x), theory))
            errors[width] = float(np.mean(errs))
        assert errors[1024] < 0.15
        assert errors[1024] < 0.6 * errors[64]


# --- Linearization and kernel gradient descent ----------------------------------------------------


def test_linearized_model(mlp):
    with jax.enable_x64(True):
        apply_fn, params, x1 = mlp.apply_fn, mlp.params, mlp.x1
        delta = jax.tree.map(lambda p: 1e-3 * jnp.cos(jnp.arange(p.size).reshape(p.shape)), params)
        f_lin = jax.jit(ntk.linearize(apply_fn, params))
        apply_fn = jax.jit(apply_fn)
        f0 = apply_fn(params, x1)
        np.testing.assert_allclose(f_lin(params, x1), f0, rtol=1e-14)
        moved = lambda s: jax.tree.map(lambda p, d: p + s * d, params, delta)  # noqa: E731
        # Exactly linear in theta - theta0, with slope J(x) delta.
        slope = jnp.einsum("iap,p->ia", mlp.j1, ravel_pytree(delta)[0])
        for s in (1.0, 2.0, -3.0):
            np.testing.assert_allclose(f_lin(moved(s), x1) - f0, s * slope, rtol=1e-10, atol=1e-14)
        # Taylor: f - f_lin = O(|delta|^2).
        gap = [float(jnp.max(jnp.abs(apply_fn(moved(s), x1) - f_lin(moved(s), x1))))
               for s in (1.0, 0.5)]
        np.testing.assert_allclose(gap[0] / gap[1], 4.0, rtol=0.05)


def _gd_runner(apply_fn):
    """Jitted full-batch GD on 0.5 * mean((f_lin - y)^2); returns the final (f_train, f_test)."""

    @jax.jit
    def run(params0, x_train, y_train, x_test, lr, steps):
        def loss(p):
            f = ntk.linearized_apply(apply_fn, params0, p, x_train)
            return 0.5 * jnp.mean((f - y_train) ** 2)

        def body(_, p):
            return jax.tree.map(lambda a, g: a - lr * g, p, jax.grad(loss)(p))

        p = jax.lax.fori_loop(0, steps, body, params0)
        return (ntk.linearized_apply(apply_fn, params0, p, x_train),
                ntk.linearized_apply(apply_fn, params0, p, x_test))

    return run


@pytest.fixture(scope="module")
def gd():
    """A 3 -> 8 -> 6 -> 2 Flax MLP (P = 100), 6 training and 4 test inputs, its eNTKs (float64).

    Seed 5 gives a well-conditioned train kernel (condition number 128), so GD converges quickly.
    """
    with jax.enable_x64(True):
        apply_fn, params, x_tr, x_te = _flax_mlp(5, n1=6, n2=4, d_in=3, out_dim=2,
                                                 widths=(8, 6))
        y = jnp.sin(3.0 * x_tr[:, :2])
        k_tt = _k(ntk.empirical_ntk, apply_fn, params, x_tr)
        k_st = _k(ntk.empirical_ntk, apply_fn, params, x_te, x_tr)
        m = np.asarray(jnp.transpose(k_tt, (0, 2, 1, 3)).reshape(12, 12))
        ms = np.asarray(jnp.transpose(k_st, (0, 2, 1, 3)).reshape(8, 12))
        return SimpleNamespace(
            apply_fn=apply_fn, params=params, x_tr=x_tr, x_te=x_te, y=y, k_tt=k_tt, k_st=k_st,
            m=m, ms=ms, lam_max=np.linalg.eigvalsh(m)[-1], run=_gd_runner(apply_fn),
            f0_tr=apply_fn(params, x_tr), f0_te=apply_fn(params, x_te))


def test_gradient_descent_mse_matches_explicit_gd(gd):
    with jax.enable_x64(True):
        n = gd.y.size
        kw = dict(k_test_train=gd.k_st, fx_train_0=gd.f0_tr, fx_test_0=gd.f0_te)
        args = (gd.params, gd.x_tr, gd.y, gd.x_te)
        # Discrete-time formula: exact for any step size (here 1.5x past the flow's regime).
        lr = 1.5 * n / gd.lam_max
        f_tr, f_te = gd.run(*args, lr, 40)
        pred = ntk.gradient_descent_mse(gd.k_tt, gd.y, 40, learning_rate=lr, discrete=True, **kw)
        np.testing.assert_allclose(pred.train, f_tr, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(pred.test, f_te, rtol=1e-9, atol=1e-10)
        # Continuous-time formula: the small-step limit, with error O(lr) at fixed lr * steps.
        errs = []
        for lr_small, steps in ((0.02 * n / gd.lam_max, 200), (0.01 * n / gd.lam_max, 400)):
            f_tr, f_te = gd.run(*args, lr_small, steps)
            flow = ntk.gradient_descent_mse(gd.k_tt, gd.y, float(steps), learning_rate=lr_small,
                                            **kw)
            errs.append(float(jnp.max(jnp.abs(flow.test - f_te))))
            assert errs[-1] < 0.02 * float(jnp.max(jnp.abs(f_te - gd.f0_te)))
        np.testing.assert_allclose(errs[0] / errs[1], 2.0, rtol=0.1)  # first order in lr


def test_kernel_regression_equals_converged_linearized_gd(gd):
    """T6: GD on the linearized model to convergence = f0 + K* K^-1 (y - f0)."""
    with jax.enable_x64(True):
        n = gd.y.size
        eig = np.linalg.eigvalsh(gd.m)
        assert eig[-1] / eig[0] < 500  # residual after 20k steps of lr = n / lam_max: < e^{-40}
        f_tr, f_te = gd.run(gd.params, gd.x_tr, gd.y, gd.x_te, n / gd.lam_max, 20_000)
        kw = dict(k_test_train=gd.k_st, fx_train_0=gd.f0_tr, fx_test_0=gd.f0_te)
        pred = ntk.gradient_descent_mse(gd.k_tt, gd.y, None, **kw)
        np.testing.assert_allclose(pred.train, gd.y, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(f_tr, gd.y, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(pred.test, f_te, rtol=1e-9, atol=1e-9)
        fit = ntk.kernel_regression(gd.k_tt, gd.y, gd.k_st, fx_train_0=gd.f0_tr,
                                    fx_test_0=gd.f0_te)
        np.testing.assert_allclose(fit.test, pred.test, rtol=1e-10, atol=1e-12)
        late = ntk.gradient_descent_mse(gd.k_tt, gd.y, 1e9, **kw)
        np.testing.assert_allclose(late.test, pred.test, rtol=1e-8, atol=1e-10)


def test_gradient_descent_mse_finite_time_formula_and_shapes(gd):
    """f_train(t) = y + expm(-lr t K / n)(f0 - y) (scipy oracle); 2-D kernels act as K (x) I."""
    scipy_linalg = pytest.importorskip("scipy.linalg")
    with jax.enable_x64(True):
        y, n = gd.y, gd.y.size
        f0 = 0.3 * np.ones((6, 2))
        pred = jax.jit(lambda k, y, f0: ntk.gradient_descent_mse(k, y, 2.5, fx_train_0=f0,
                                                                 learning_rate=2.0))(gd.k_tt, y, f0)
        oracle = np.ravel(y) + scipy_linalg.expm(-5.0 * gd.m / n) @ np.ravel(f0 - np.asarray(y))
        np.testing.assert_allclose(pred.train, oracle.reshape(6, 2), rtol=1e-11, atol=1e-12)
        # A 2-D kernel is shared across outputs: same as the 4-D kernel K[i, j] * I_O.
        k2 = jnp.einsum("ijaa->ij", gd.k_tt) / 2
        ks2 = jnp.einsum("ijaa->ij", gd.k_st) / 2
        k4 = jnp.einsum("ij,ab->ijab", k2, jnp.eye(2))
        ks4 = jnp.einsum("ij,ab->ijab", ks2, jnp.eye(2))
        for t in (None, 3.0):
            predict = jax.jit(lambda k, y, ks: ntk.gradient_descent_mse(k, y, t, k_test_train=ks,
                                                                        diag_reg=0.1))
            p2, p4 = predict(k2, y, ks2), predict(k4, y, ks4)
            np.testing.assert_allclose(p2.train, p4.train, rtol=1e-11, atol=1e-12)
            np.testing.assert_allclose(p2.test, p4.test, rtol=1e-11, atol=1e-12)
        # One output given as a vector: n = N instead of N O, so time runs twice as fast.
        predict = jax.jit(lambda k, y, t, ks: ntk.gradient_descent_mse(k, y, t, k_test_train=ks))
        p1 = predict(k2, y[:, 0], 3.0, ks2)
        assert p1.train.shape == (6,) and p1.test.shape == (4,)
        p_all = predict(k2, y, 6.0, ks2)
        np.testing.assert_allclose(p1.test, p_all.test[:, 0], rtol=1e-12)
        np.testing.assert_allclose(p1.train, p_all.train[:, 0], rtol=1e-12)


# --- Solvers --------------------------------------------------------------------------------------


def test_kernel_regression_vs_numpy_lstsq(gd):
    with jax.enable_x64(True):
        yn = np.asarray(gd.y)
        k2, ks2 = np.einsum("ijaa->ij", gd.k_tt), np.einsum("ijaa->ij", gd.k_st)
        ridge = 0.05
        for ridge_scale in ("absolute", "trace", "spectral"):
            # Full (N, N, O, O) kernel, flattened to (N O, N O).
            scale = {"absolute": 1.0, "trace": np.mean(np.diag(gd.m)),
                     "spectral": np.linalg.svd(gd.m, compute_uv=False)[0]}[ridge_scale]
            alpha = np.linalg.lstsq(gd.m + ridge * scale * np.eye(12), yn.ravel(), rcond=None)[0]
            fit = jax.jit(lambda k, y, ks: ntk.kernel_regression(
                k, y, ks, ridge=ridge, ridge_scale=ridge_scale))(gd.k_tt, gd.y, gd.k_st)
            np.testing.assert_allclose(fit.alpha[:, 0], alpha, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(fit.test, (gd.ms @ alpha).reshape(4, 2), rtol=1e-10,
                                       atol=1e-12)
            np.testing.assert_allclose(fit.train, (gd.m @ alpha).reshape(6, 2), rtol=1e-10,
                                       atol=1e-12)
            # 2-D (shared) kernel with several right-hand sides.
            scale2 = {"absolute": 1.0, "trace": np.mean(np.diag(k2)),
                      "spectral": np.linalg.svd(k2, compute_uv=False)[0]}[ridge_scale]
            alpha2 = np.linalg.lstsq(k2 + ridge * scale2 * np.eye(6), yn, rcond=None)[0]
            fit2 = ntk.kernel_regression(jnp.asarray(k2), gd.y, jnp.asarray(ks2), ridge=ridge,
                                         ridge_scale=ridge_scale)
            np.testing.assert_allclose(fit2.test, ks2 @ alpha2, rtol=1e-10, atol=1e-12)
        with pytest.raises(ValueError, match="ridge_scale"):
            ntk.kernel_regression(gd.k_tt, gd.y, ridge_scale="operator")


def test_kernel_regression_interpolates_and_adjusts_for_init(gd):
    with jax.enable_x64(True):
        y = gd.y
        fit = ntk.kernel_regression(gd.k_tt, y, gd.k_st)
        np.testing.assert_allclose(fit.train, y, rtol=1e-9, atol=1e-10)
        # LM-Kernel-FT's adjust_for_init: pred = f0/s + K* K^-1 (y - f0/s).
        f0, f0_te, s = 0.7 * jnp.ones((6, 2)), -0.2 * jnp.ones((4, 2)), 10.0
        adj = ntk.kernel_regression(gd.k_tt, y, gd.k_st, fx_train_0=f0 / s, fx_test_0=f0_te / s)
        oracle = np.ravel(f0_te / s) + gd.ms @ np.linalg.solve(gd.m, np.ravel(y - f0 / s))
        np.testing.assert_allclose(adj.test, oracle.reshape(4, 2), rtol=1e-9, atol=1e-10)
        # A singular kernel: the minimum-norm solution, as numpy.linalg.lstsq.
        feats = np.random.default_rng(0).standard_normal((6, 3))
        k_low = feats @ feats.T
        ref = np.linalg.lstsq(k_low, np.asarray(y), rcond=None)[0]
        np.testing.assert_allclose(ntk.kernel_regression(jnp.asarray(k_low), y).alpha, ref,
                                   rtol=1e-8, atol=1e-10)


def _three_classes(seed=0):
    """Three Gaussian clusters in 5-D: 30 training and 12 test points with labels (NumPy)."""
    rng = np.random.default_rng(seed)
    centers = 2.0 * rng.standard_normal((3, 5))
    labels = np.repeat(np.arange(3), 10)
    test_labels = np.arange(12) % 3
    feats = centers[labels] + rng.standard_normal((30, 5))
    test_feats = centers[test_labels] + rng.standard_normal((12, 5))
    return feats, labels, test_feats, test_labels


def test_kernel_logistic_regression_vs_sklearn():
    linear_model = pytest.importorskip("sklearn.linear_model")
    with jax.enable_x64(True):
        feats, labels, test_feats, _ = _three_classes()
        k_tt = np.tanh(feats @ feats.T / 5)
        k_st = np.tanh(test_feats @ feats.T / 5)
        l2 = 0.05
        fit = jax.jit(lambda k, y, ks: ntk.kernel_logistic_regression(
            k, y, ks, num_classes=3, l2=l2, tol=1e-10))(k_tt, labels, k_st)
        assert float(fit.grad_norm) < 1e-8
        phi = (np.asarray(k_tt) - np.asarray(fit.feature_mean)) / np.asarray(fit.feature_scale)
        phi_t = (np.asarray(k_st) - np.asarray(fit.feature_mean)) / np.asarray(fit.feature_scale)
        np.testing.assert_allclose(fit.feature_mean, np.mean(k_tt, 0), rtol=1e-12)
        np.testing.assert_allclose(fit.feature_scale, np.std(k_tt, 0), rtol=1e-12)
        ref = linear_model.LogisticRegression(C=1.0 / (l2 * 30), tol=1e-12, max_iter=10_000)
        ref.fit(phi, np.asarray(labels))
        np.testing.assert_allclose(jax.nn.softmax(fit.test_logits), ref.predict_proba(phi_t),
                                   atol=1e-6)
        np.testing.assert_allclose(jax.nn.softmax(fit.train_logits), ref.predict_proba(phi),
                                   atol=1e-6)


def test_kernel_svm_vs_linear_svc():
    svm = pytest.importorskip("sklearn.svm")
    with jax.enable_x64(True):
        feats, labels, test_feats, _ = _three_classes()
        y = np.where(np.asarray(labels) == 0, 1, -1)
        f, ft = np.asarray(feats), np.asarray(test_feats)
        fit = ntk.kernel_svm(jnp.asarray(f @ f.T), y, jnp.asarray(ft @ f.T), C=0.5)
        ref = svm.SVC(kernel="linear", C=0.5).fit(f, y)
        np.testing.assert_allclose(fit.test_decision, ref.decision_function(ft), rtol=1e-6,
                                   atol=1e-6)
        np.testing.assert_array_equal(fit.test_pred, ref.predict(ft))
        np.testing.assert_array_equal(np.sort(fit.support), np.sort(ref.support_))
        targets = f @ np.array([1.0, -0.5, 0.0, 0.25, 2.0])
        reg = ntk.kernel_svm(f @ f.T, targets, ft @ f.T, task="regression", C=10.0, epsilon=0.05)
        ref_reg = svm.SVR(kernel="linear", C=10.0, epsilon=0.05).fit(f, targets)
        np.testing.assert_allclose(reg.test_pred, ref_reg.predict(ft), rtol=1e-6, atol=1e-6)
        with pytest.raises(ValueError, match="square"):
            ntk.kernel_svm(f @ ft.T, y)


def test_kernel_diagnostics_against_numpy():
    from dynamics.ntk.diagnostics import accuracy, agreement, relative_change

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 3, 2)), rng.normal(size=(4, 3, 2))
    assert relative_change(jnp.asarray(a), jnp.asarray(b)) == pytest.approx(
        np.linalg.norm(a - b) / np.linalg.norm(b), rel=1e-6)
    f = jnp.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    g = jnp.array([[0.6, 0.4], [0.9, 0.1], [0.2, 0.8]])
    assert accuracy(f, jnp.array([1, 0, 0])) == pytest.approx(2 / 3)
    assert agreement(f, g) == pytest.approx(2 / 3)


def test_flat_jacobian_equals_the_explicit_jacobian(mlp):
    with jax.enable_x64(True):
        jac = jax.jit(lambda p, x: ntk.flat_jacobian(mlp.apply_fn, p, x))(mlp.params, mlp.x1)
        np.testing.assert_allclose(jac, mlp.j1, rtol=1e-10, atol=1e-12)
