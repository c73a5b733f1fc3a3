"""dynamics.flows in float64 against exact identities and independent oracles (dense Hessians, numpy)."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynamics import flows


pytestmark = pytest.mark.usefixtures("x64")  # float64 for every test here (conftest)


@pytest.mark.parametrize("sigma", [0.0, 1.0])
def test_exact_toy_uv_label_noise_shrinks_balance_by_one_minus_eta2_r2(sigma):
    # f = u·v, one sample y = 1: one step with noisy residual r gives D' = D·(1 − η²r²), D = u² − v².
    Z, y, lr, steps = jnp.ones((1, 1)), jnp.ones(1), 0.05, 2000
    key = jax.random.key(3)

    @jax.jit
    def trajectory(w0):
        def body(w, t):
            w_next, r = flows.label_noise_step("uv", w, Z, y, lr, sigma, jax.random.fold_in(key, t))
            return w_next, (w_next, r[0])
        return jax.lax.scan(body, w0, jnp.arange(steps))[1]

    w0 = jnp.array([2.0, 0.5])
    ws, r = trajectory(w0)
    ws = np.concatenate([np.asarray(w0)[None], np.asarray(ws)])
    D = ws[:, 0] ** 2 - ws[:, 1] ** 2
    predicted = D[:-1] * (1 - lr ** 2 * np.asarray(r) ** 2)
    assert np.max(np.abs(D[1:] - predicted)) < 1e-12
    if sigma == 0:
        assert np.max(np.abs(D / D[0] - 1)) < 1e-12  # GD conserves u² − v²
    else:
        rate = -np.log(D[-1] / D[0]) / (sigma ** 2 * lr ** 2 * steps)
        assert 0.9 <= rate <= 1.3  # the flow's exp(−σ²η²k), slightly faster since E r² > σ²
        assert abs(ws[-1, 0] - ws[-1, 1]) < 0.1  # balanced


@pytest.mark.parametrize("kind,depth", [("uu_minus_vv", 2), ("uv", 2), ("power", 3)])
def test_hessian_trace_closed_form_matches_dense_hessian_and_hutchinson(kind, depth, key):
    from dynamics.curvature import hessian_trace as hutchinson

    kd, kw = jax.random.split(key)
    Z, y, _ = flows.sparse_regression(kd, 6, 4, 2)
    w = 0.7 + 0.3 * jax.random.normal(kw, (12,))  # off the manifold: the residual term counts too
    loss = partial(flows.loss, kind, Z=Z, y=y, depth=depth)
    dense = jnp.trace(jax.jit(jax.hessian(loss))(w))
    exact = flows.hessian_trace(kind, w, Z, y, depth)
    assert abs(exact - dense) < 1e-10 * max(1.0, abs(dense))
    est = hutchinson(loss, w, key=jax.random.key(1), num_samples=4000)
    assert abs(est.estimate - exact) < 5 * est.stderr + 1e-9


def test_hessian_trace_on_the_manifold_is_the_weighted_l1_functional(key):
    Z, y, _ = flows.sparse_regression(key, 8, 3, 2)
    w = jax.random.normal(jax.random.key(2), (16,))
    u, v = flows.split(w)
    s = np.sum(np.asarray(Z) ** 2, axis=0)
    expected = 4 / 3 * np.sum(s * (np.asarray(u) ** 2 + np.asarray(v) ** 2))
    assert abs(flows.hessian_trace("uu_minus_vv", w, Z, y) - expected) < 1e-10


@pytest.mark.parametrize("model", [flows.MirrorModel("uu_minus_vv", 0.3, 0.3), flows.MirrorModel("uu_minus_vv", 0.7, 0.2),
                                   flows.MirrorModel("uv", 0.5, 0.2), flows.MirrorModel("power", 0.5, 0.5, 3),
                                   flows.MirrorModel("power", 0.8, 0.8, 4)])
def test_mirror_potential_gradient_inverts_the_flow_map(model):
    mu = jnp.linspace(-0.4, 0.4, 9)
    if model.kind == "power":
        D, a = model.depth, model.u0
        mu = mu * 0.9 / (D * (D - 2) * a ** (D - 2) * 0.4)  # keep s inside (−1, 1)
    x = model.grad_R_inv(mu)
    assert np.max(np.abs(model.grad_R(x) - mu)) < 1e-10
    assert abs(model.grad_R_inv(jnp.zeros(1))[0] - model.G(model.init(1))[0]) < 1e-14  # ∇R(x₀) = 0
    # the leaf map is the flow of w₀ along ∇G: integrate dw/dμ = ∇G(w) numerically (RK4) and compare
    g = jax.grad(lambda p: model.G(p)[0])
    h, n = float(mu[-1]) / 1000, 1000

    def rk4(_, w):
        k1 = g(w)
        k2 = g(w + h / 2 * k1)
        k3 = g(w + h / 2 * k2)
        k4 = g(w + h * k3)
        return w + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)

    w = jax.jit(lambda w0: jax.lax.fori_loop(0, n, rk4, w0))(model.init(1))
    assert abs(model.G(w)[0] - x[-1]) < 1e-8 * max(1.0, abs(float(x[-1])))
    if model.kind != "power":  # R's gradient is ∇R
        xs = jnp.linspace(-1.0, 2.0, 7)
        assert np.max(np.abs(jax.grad(model.R)(xs) - model.grad_R(xs))) < 1e-10


def test_woodworth_potential_is_a_quarter_of_the_mirror_potential():
    alpha, xs = 0.3, jnp.linspace(-2.0, 2.0, 11)
    model = flows.MirrorModel("uu_minus_vv", alpha, alpha)
    g_q = jax.vmap(jax.grad(lambda x: flows.woodworth_potential(x[None], alpha)))(xs)
    assert np.max(np.abs(g_q - 4 * model.grad_R(xs))) < 1e-10


def test_lie_brackets_vanish_for_diagonal_models_and_not_for_matrix_factorizations(key):
    w = jax.random.normal(key, (8,)) + 1.0
    for model in (flows.MirrorModel("uu_minus_vv", 1, 1), flows.MirrorModel("uv", 1, 1),
                  flows.MirrorModel("power", 1, 1, 3)):
        assert flows.max_lie_bracket(model.G, w) < 1e-10
    uut = flows.max_lie_bracket(lambda p: (p[:4].reshape(2, 2) @ p[:4].reshape(2, 2).T).ravel(), w)
    w2w1 = flows.max_lie_bracket(lambda p: (p[4:].reshape(2, 2) @ p[:4].reshape(2, 2)).ravel(), w)
    assert uut > 0.1 and w2w1 > 0.1
    # the bracket by hand for G = (u², uv) at (u, v): ∇G₁ = (2u, 0), ∇G₂ = (v, u); [∇G₁, ∇G₂] = (2v, −2u)
    G = lambda p: jnp.array([p[0] ** 2, p[0] * p[1]])  # noqa: E731
    p = jnp.array([0.7, -1.3])
    assert np.allclose(flows.lie_bracket(G, p, 0, 1), [2 * -1.3, -2 * 0.7], atol=1e-12)


def test_gd_vs_mirror_gap_halves_with_eta_for_commuting_and_not_for_generic_matrices(key):
    Z = jax.random.normal(key, (5, 12)) / np.sqrt(5)
    y = Z @ jnp.zeros(12).at[:2].set(jnp.array([1.0, -0.5]))
    model = flows.MirrorModel("uu_minus_vv", 0.3, 0.3)
    run = jax.jit(partial(flows.gd_vs_mirror, model, steps=100, log_every=1))
    gaps = [float(jnp.max(jnp.linalg.norm(a - b, axis=1))) for a, b in
            (run(Z, y, lr=0.04 / k, substeps=k) for k in (1, 2))]
    assert 1.8 <= gaps[0] / gaps[1] <= 2.2
    A, b, _ = flows.matrix_sensing(jax.random.key(1), 4, 5, commuting=False)
    mat = jax.jit(partial(flows.matrix_gd_vs_mirror, steps=200, log_every=10))
    mgaps = [float(jnp.max(jnp.linalg.norm(p - q, axis=(1, 2)))) for p, q in
             (mat(A, b, 0.3, lr=0.01 / k, substeps=k) for k in (1, 2))]
    assert mgaps[0] / mgaps[1] < 1.5 and mgaps[1] > 1e-2


def test_argmin_woodworth_is_a_kkt_point_and_interpolates_l1_to_l2(key):
    Z, y, w_star = flows.sparse_regression(key, 30, 12, 2)
    x_l2 = flows.min_l2_interpolant(Z, y)
    x_l1 = flows.min_weighted_l1_interpolant(Z, y)
    assert np.linalg.norm(x_l1 - w_star) < 1e-8  # precondition: ℓ1 recovers w*
    for alpha in (1e-3, 0.1, 10.0):
        x, res = flows.argmin_woodworth(Z, y, alpha)
        assert res < 1e-10
        g = jnp.arcsinh(x / (2 * alpha ** 2))  # ∇Q_α(x) must lie in range(Zᵀ)
        nu = jnp.linalg.lstsq(Z.T, g)[0]
        assert jnp.linalg.norm(Z.T @ nu - g) < 1e-8 * max(1.0, float(jnp.linalg.norm(g)))
        for other in (x_l1, x_l2):  # no smaller potential among other interpolants
            assert flows.woodworth_potential(x, alpha) <= flows.woodworth_potential(jnp.asarray(other), alpha) + 1e-12
    errs = [float(jnp.linalg.norm(flows.argmin_woodworth(Z, y, a)[0] - w_star)) for a in (1e-4, 0.1, 10.0)]
    assert errs[0] < errs[1] < errs[2]
    assert np.linalg.norm(flows.argmin_woodworth(Z, y, 10.0)[0] - x_l2) < 1e-3


def test_tangent_projection_and_gauss_newton_projection(key):
    Z, y, _ = flows.sparse_regression(key, 10, 4, 2)
    predict = lambda w, Z: Z @ flows.diag_map("uu_minus_vv", w)  # noqa: E731
    w = flows.gauss_newton_project(predict, flows.init_params(10, 1.0), Z, y, iters=20)
    assert jnp.linalg.norm(predict(w, Z) - y) < 1e-12
    J = jax.jit(jax.jacfwd(predict))(w, Z)
    g = jax.random.normal(jax.random.key(5), w.shape)
    p = flows.tangent_projection(J, g)
    assert jnp.linalg.norm(J @ p) < 1e-10 and jnp.linalg.norm(flows.tangent_projection(J, p) - p) < 1e-10


def test_label_noise_flow_decreases_trace_and_stays_on_the_manifold(key):
    Z, y, _ = flows.sparse_regression(key, 10, 4, 2)
    predict = lambda w, Z: Z @ flows.diag_map("uu_minus_vv", w)  # noqa: E731
    trace = lambda w, Z, y: flows.hessian_trace("uu_minus_vv", w, Z, y)  # noqa: E731
    phi = flows.gradient_flow_limit(predict, flows.init_params(10, 1.0), Z, y, lr=0.01, steps=3000)
    _, ws = jax.jit(partial(flows.label_noise_flow, predict, trace, dt=0.01, steps=200, log_every=20))(
        phi, Z, y, c=0.25)
    traces = np.array([trace(w, Z, y) for w in ws])
    assert np.all(np.diff(traces) < 0)
    assert max(float(jnp.linalg.norm(predict(w, Z) - y)) for w in ws) < 1e-9


def test_margin_tools_on_a_hand_built_optimal_net(key):
    X, y = flows.symmetric_separable_data(key, 12, 4)
    w_hat, gamma = flows.svm_direction(X, y)
    assert np.min(np.asarray(y) * (np.asarray(X) @ w_hat)) >= gamma - 1e-9
    # one neuron pair w = ±ŵ, a = ±1 attains q* = (1 + α)/4·γ and is linear
    leak = 0.1
    params = {"W": jnp.stack([jnp.asarray(w_hat), -jnp.asarray(w_hat)]), "a": jnp.array([1.0, -1.0])}
    q = flows.normalized_margin(params, X, y, leak)
    assert abs(q - flows.optimal_margin(gamma, leak)) < 1e-9
    assert flows.linearity(params, X, leak) < 1e-12
