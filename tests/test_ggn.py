"""GGN and empirical-Fisher products against dense JᵀH_ℓJ and (1/n)Σ gᵢgᵢᵀ built with jax.jacobian, in
float64; every eigensolver and trace estimator on the flat operators."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from dynamics.curvature.ggn import (OutputLoss, cross_entropy_output_loss, empirical_fisher_vp,
                                    flat_empirical_fisher, flat_ggn, ggn_top_eigenvalues,
                                    ggn_trace, ggn_vp, mse_output_loss, output_loss)
from dynamics.curvature.hvp import hvp
from dynamics.curvature.topk import eigsh_top_k
from dynamics.curvature.trace import trace_estimate
from dynamics.losses import cross_entropy, mse, sqrt_mse
from dynamics.models import build_model

N, D, C = 12, 3, 3


def problem(loss_name, key=jax.random.key(0)):
    k_x, k_y, k_p = jax.random.split(key, 3)
    model = build_model("mlp", (D,), C, widths=[6], activation="tanh")
    params = jax.tree.map(lambda p: p.astype(jnp.float64), model.init(k_p))
    x = jax.random.normal(k_x, (N, D), jnp.float64)
    if loss_name == "cross_entropy":
        y = jax.random.randint(k_y, (N,), 0, C)
    else:
        y = jax.random.normal(k_y, (N, C), jnp.float64)
    return model, params, x, y


def dense_operators(model, params, x, loss_of_outputs):
    """Dense (G, F_emp) from jax.jacobian / jax.hessian on flat parameters."""
    flat, unravel = ravel_pytree(params)
    return tuple(np.asarray(a) for a in jax.jit(_dense, static_argnums=(0, 1, 4))(
        model, unravel, flat, x, loss_of_outputs))


def _dense(model, unravel, flat, x, loss_of_outputs):

    def f(w):
        return model.apply(unravel(w), x)

    outputs = f(flat)
    J = jax.jacobian(f)(flat).reshape(N * C, -1)
    H_l = jax.hessian(loss_of_outputs)(outputs).reshape(N * C, N * C)
    G = J.T @ H_l @ J
    r = jax.grad(loss_of_outputs)(outputs) * N  # per-example ∇_f ℓ_i
    per_example = jnp.einsum("ic,icp->ip", r, J.reshape(N, C, -1))
    F = per_example.T @ per_example / N
    return G, F


LOSSES = {"mse": mse, "cross_entropy": cross_entropy}


@pytest.mark.parametrize("loss_name", ["mse", "cross_entropy"])
@pytest.mark.parametrize("closed_form", [True, False])
def test_ggn_and_fisher_match_dense(loss_name, closed_form):
    with jax.enable_x64(True):
        model, params, x, y = problem(loss_name)
        if closed_form:
            lo = output_loss(loss_name, y)
            assert isinstance(lo, OutputLoss)
        else:
            lo = lambda f: LOSSES[loss_name](f, y)  # noqa: E731  (autodiff fallback)
        G, F = dense_operators(model, params, x, lambda f: LOSSES[loss_name](f, y))
        v = jax.tree.map(lambda p: jax.random.normal(jax.random.key(5), p.shape, p.dtype), params)
        vf = np.asarray(ravel_pytree(v)[0])

        @jax.jit
        def products(params, v, x, y):
            apply = lambda p: model.apply(p, x)  # noqa: E731
            lo_ = output_loss(loss_name, y) if closed_form else (
                lambda f: LOSSES[loss_name](f, y))
            return ggn_vp(apply, lo_, params, v), empirical_fisher_vp(apply, lo_, params, v)

        gv, fv = products(params, v, x, y)
        np.testing.assert_allclose(ravel_pytree(gv)[0], G @ vf, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(ravel_pytree(fv)[0], F @ vf, rtol=1e-10, atol=1e-13)
        # the flat (linearized) operators agree too
        mv, flat, _ = flat_ggn(lambda p: model.apply(p, x), lo, params)
        mf, _, _ = flat_empirical_fisher(lambda p: model.apply(p, x), lo, params)
        np.testing.assert_allclose(mv(jnp.asarray(vf)), G @ vf, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(mf(jnp.asarray(vf)), F @ vf, rtol=1e-10, atol=1e-13)


def test_closed_form_output_hessians_match_autodiff():
    with jax.enable_x64(True):
        f = jax.random.normal(jax.random.key(1), (N, C), jnp.float64)
        u = jax.random.normal(jax.random.key(2), (N, C), jnp.float64)
        labels = jax.random.randint(jax.random.key(3), (N,), 0, C)
        targets = jax.random.normal(jax.random.key(4), (N, C), jnp.float64)
        for lo, plain in [(mse_output_loss(targets), lambda g: mse(g, targets)),
                          (cross_entropy_output_loss(labels), lambda g: cross_entropy(g, labels))]:
            want = jax.jvp(jax.grad(plain), (f,), (u,))[1]
            np.testing.assert_allclose(lo.hessian_vp(f, u), want, rtol=1e-12, atol=1e-14)
            assert float(lo(f)) == pytest.approx(float(plain(f)), rel=1e-14)
        # sqrt_mse has no closed form: a plain callable (autodiff)
        lo = output_loss("sqrt_mse", targets)
        assert not isinstance(lo, OutputLoss)
        assert float(lo(f)) == pytest.approx(float(sqrt_mse(f, targets)), rel=1e-14)


def test_ggn_equals_hessian_for_a_linear_model():
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(0), (N, D), jnp.float64)
        labels = jax.random.randint(jax.random.key(1), (N,), 0, C)
        w = jax.random.normal(jax.random.key(2), (D, C), jnp.float64)
        v = jax.random.normal(jax.random.key(3), (D, C), jnp.float64)
        lo = cross_entropy_output_loss(labels)
        gv = ggn_vp(lambda p: x @ p, lo, w, v)
        hv = hvp(lambda p: lo(x @ p), w, v)
        np.testing.assert_allclose(gv, hv, rtol=1e-12, atol=1e-14)


def test_every_solver_and_trace_estimator_on_ggn_and_fisher():
    """Lanczos, block power and LOBPCG on the GGN, Lanczos on the empirical Fisher; Hutchinson and
    Hutch++ on the GGN, Hutchinson on the Fisher (the operators share the flat-matvec interface)."""
    with jax.enable_x64(True):
        model, params, x, y = problem("cross_entropy")
        G, F = dense_operators(model, params, x, lambda f: cross_entropy(f, y))
        k = 2
        cases = [("ggn", "lanczos"), ("ggn", "power"), ("ggn", "lobpcg"),
                 ("empirical_fisher", "lanczos")]
        traces = [("ggn", "hutchinson"), ("ggn", "hutchpp"), ("empirical_fisher", "hutchinson")]

        @jax.jit
        def solve(params, x, y, key):
            apply = lambda p: model.apply(p, x)  # noqa: E731
            lo = cross_entropy_output_loss(y)
            out = {}
            for op, method in cases:
                out[op, method] = ggn_top_eigenvalues(apply, lo, params, k, key=key, operator=op,
                                                      method=method, tol=1e-8, max_iters=6000)
            for op, tm in traces:
                out[op, tm] = ggn_trace(apply, lo, params, key=key, num_samples=300, operator=op,
                                        method=tm)
            return out

        out = solve(params, x, y, jax.random.key(7))
        dense = {"ggn": G, "empirical_fisher": F}
        for op, method in cases:
            want = np.linalg.eigvalsh(dense[op])[::-1][:k]
            res = out[op, method]
            assert bool(res.converged), (op, method)
            np.testing.assert_allclose(res.values, want, rtol=1e-6, err_msg=f"{op} {method}")
            V = np.asarray(jax.vmap(lambda t: ravel_pytree(t)[0])(res.vectors))
            resid = np.linalg.norm(V @ dense[op] - res.values[:, None] * V, axis=1)
            assert np.all(resid <= 1e-5 * want[0]), (op, method, resid)
        for op, tm in traces:
            tr = np.trace(dense[op])
            est = out[op, tm]
            assert abs(float(est.estimate) - tr) <= 5 * float(est.stderr) + 1e-9 * tr, (op, tm)
            assert float(est.stderr) < 0.2 * tr


def test_flat_operator_with_eigsh_and_trace_estimate_directly():
    """The flat matvecs are ordinary operators for eigsh_top_k / trace_estimate (the primitives)."""
    with jax.enable_x64(True):
        model, params, x, y = problem("mse")
        G, _ = dense_operators(model, params, x, lambda f: mse(f, y))

        @jax.jit
        def run(params, x, y, key):
            mv, flat, _ = flat_ggn(lambda p: model.apply(p, x), mse_output_loss(y), params)
            V0 = jax.random.normal(key, (1, flat.shape[0]), flat.dtype)
            top = eigsh_top_k(mv, V0, tol=1e-9, max_iters=2000)
            tr = trace_estimate(mv, flat.shape[0], flat.dtype, key=key, num_samples=30,
                                method="hutchpp")
            return top, tr

        top, tr = run(params, x, y, jax.random.key(1))
        assert float(top.values[0]) == pytest.approx(np.linalg.eigvalsh(G)[-1], rel=1e-8)
        assert abs(float(tr.estimate) - np.trace(G)) <= 5 * float(tr.stderr) + 1e-8


def test_unknown_operator_raises():
    with pytest.raises(ValueError, match="empirical_fisher"):
        ggn_top_eigenvalues(lambda p: p[None, :], mse_output_loss(jnp.zeros((1, 2))),
                            jnp.ones(2), key=jax.random.key(0), operator="hessian")
