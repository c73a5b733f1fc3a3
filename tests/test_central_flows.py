"""Central flows' library: third derivatives, the SDCP, eigenvalue tracking (float64, tiny models)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from scipy.optimize import minimize

from dynamics.curvature.third import (eigenvalue_gradient, hessian_inner_gradient, hessian_quadratic,
                                      third_vector, third_vector_pairs)
from dynamics.curvature.tracking import EigenTracker, align_signs, hessian_matvec, rayleigh_ritz
from dynamics.flows.central_sdcp import operator_matrix, smat, solve_sdcp, solve_sdcp_svec, svec
from dynamics.losses import mse
from dynamics.models import build_model


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


class LNNet(nn.Module):
    """Dense → LayerNorm → tanh → Dense: flax's LayerNorm must be right to third order."""

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(6, param_dtype=jnp.float64)(x)
        h = nn.LayerNorm(param_dtype=jnp.float64)(h)
        return nn.Dense(2, param_dtype=jnp.float64)(jnp.tanh(h))


def _problem(kind, seed=0):
    kx, ky, kp = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(kx, (12, 3), jnp.float64)
    y = jax.random.normal(ky, (12, 2), jnp.float64)
    if kind == "layernorm":
        net = LNNet()
        params = net.init(kp, x)
        apply = net.apply
    else:
        model = build_model("mlp", (3,), 2, widths=[4], activation="tanh")
        params = jax.tree.map(lambda p: p.astype(jnp.float64), model.init(kp))
        apply = model.apply
    return (lambda p: mse(apply(p, x), y)), params


def _random_like(params, seed):
    flat, unravel = ravel_pytree(params)
    return unravel(jax.random.normal(jax.random.key(seed), flat.shape, flat.dtype))


def _flat(t):
    return np.asarray(ravel_pytree(t)[0])


@pytest.mark.parametrize("kind", ["mlp", "layernorm"])
def test_third_vector_matches_finite_differences_of_hvps(kind):
    loss, params = _problem(kind)
    u, v, z = (_random_like(params, s) for s in (1, 2, 3))
    eps = 1e-3
    quad = jax.jit(lambda p: hessian_quadratic(loss, p, u, v))
    shift = lambda c: jax.tree.map(lambda p, d: p + c * d, params, z)  # noqa: E731
    fd1 = (quad(shift(eps)) - quad(shift(-eps))) / (2 * eps)
    fd2 = (quad(shift(eps / 2)) - quad(shift(-eps / 2))) / eps
    fd = (4 * fd2 - fd1) / 3  # Richardson: O(eps^4)
    assert abs(fd1 - fd) <= 1e-4 * abs(fd)  # the O(eps^2) difference is small but visible
    # one jitted program per mode (eager, op by op, compiled ~100 tiny programs cold)
    tv = {mode: jax.jit(lambda p, u, v, mode=mode: third_vector(loss, p, u, v, mode=mode))
          for mode in ("jvp", "grad")}
    for mode in ("jvp", "grad"):
        got = _flat(tv[mode](params, u, v)) @ _flat(z)
        assert abs(got - fd) <= 1e-6 * abs(fd), (mode, got, fd)
    a = _flat(tv["jvp"](params, u, v))
    b = _flat(tv["grad"](params, u, v))
    c = _flat(tv["jvp"](params, v, u))
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(a).max())
    np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-12 * np.abs(a).max())


@pytest.mark.parametrize("kind", [pytest.param("mlp", marks=pytest.mark.slow), "layernorm"])
def test_third_derivatives_match_dense_hessian_of_hessian(kind):
    loss, params = _problem(kind)
    flat, unravel = ravel_pytree(params)
    D3 = np.asarray(jax.jit(jax.jacfwd(jax.hessian(lambda f: loss(unravel(f)))))(flat))  # (n, n, n)
    k = 3
    U = jax.vmap(unravel)(jax.random.normal(jax.random.key(5), (k, flat.shape[0])))
    Uf = np.asarray(jax.vmap(lambda t: ravel_pytree(t)[0])(U))
    pairs = np.asarray(jax.jit(lambda p, U: jax.vmap(lambda t: ravel_pytree(t)[0])(
        third_vector_pairs(loss, p, U)))(params, U))  # jitted: eager compiles op by op
    i, j = np.triu_indices(k)
    want = np.einsum("abc,pa,pb->pc", D3, Uf[i], Uf[j])
    np.testing.assert_allclose(pairs, want, rtol=1e-9, atol=1e-10 * np.abs(want).max())
    u0 = jax.tree.map(lambda x: x[0], U)
    got = _flat(jax.jit(lambda p, u: eigenvalue_gradient(loss, p, u))(params, u0))
    np.testing.assert_allclose(got, want[0], rtol=1e-9, atol=1e-10 * np.abs(want).max())
    X = np.array([[2.0, 0.3, -0.1], [0.3, 1.0, 0.2], [-0.1, 0.2, 0.5]])
    got = _flat(jax.jit(lambda p, X: hessian_inner_gradient(loss, p, U, X))(params, X))
    want_sigma = np.einsum("abc,ab->c", D3, Uf.T @ X @ Uf)  # ∇⟨H, U X Uᵀ⟩
    np.testing.assert_allclose(got, want_sigma, rtol=1e-9, atol=1e-10 * np.abs(want_sigma).max())


# ---------------------------------------------------------------- SDCP


def _burer_monteiro(a, M, k, rng, restarts=4):
    """Brute force: minimise ½xᵀMx + aᵀx over x = svec(LLᵀ) from random starts (BFGS)."""

    iu = np.triu_indices(k)
    w = np.where(iu[0] == iu[1], 1.0, np.sqrt(2.0))

    def f(lv):
        L = np.zeros((k, k))
        L[np.tril_indices(k)] = lv
        x = (L @ L.T)[iu] * w
        return 0.5 * x @ M @ x + a @ x

    best = min((minimize(f, 0.3 * rng.normal(size=k * (k + 1) // 2), method="BFGS",
                         options=dict(gtol=1e-11, maxiter=20000)) for _ in range(restarts)),
               key=lambda r: r.fun)
    L = np.zeros((k, k))
    L[np.tril_indices(k)] = best.x
    return L @ L.T, best.fun


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_sdcp_matches_brute_force_and_kkt(k):
    rng = np.random.default_rng(k)
    m = k * (k + 1) // 2
    solve = jax.jit(solve_sdcp_svec, static_argnums=2)
    for trial in range(4):
        G = rng.normal(size=(m, m + 1 if trial % 2 else m - 1 + 2))
        M, a = G @ G.T, rng.normal(size=m)
        res = solve(jnp.asarray(a), jnp.asarray(M), k)
        X, Y = np.asarray(res.X), np.asarray(res.Y)
        scale = np.linalg.norm(a)
        assert np.linalg.eigvalsh(X)[0] >= -1e-9 * scale
        assert np.linalg.eigvalsh(Y)[0] >= -1e-9 * scale
        assert abs(np.sum(X * Y)) <= 1e-9 * scale**2
        Xb, fb = _burer_monteiro(a, M, k, rng)
        x = np.asarray(jax.jit(svec)(res.X))
        assert 0.5 * x @ M @ x + a @ x <= fb + 1e-10 * max(1, abs(fb))
        np.testing.assert_allclose(X, Xb, atol=1e-5 * max(1, np.abs(Xb).max()))


def test_sdcp_closed_forms():
    # each library call as one jitted program (eager, op by op, they compiled ~76 tiny programs cold)
    solve = jax.jit(solve_sdcp)
    solve_svec = jax.jit(solve_sdcp_svec, static_argnums=2)
    jsvec, jop = jax.jit(svec), jax.jit(operator_matrix)
    for a, b in [(-1.5, 2.0), (0.7, 3.0), (-1e-3, 1e-4)]:
        res = solve(jnp.array([[a]]), jnp.array([[[[b]]]]))
        np.testing.assert_allclose(float(res.X[0, 0]), max(0.0, -a / b), rtol=1e-10, atol=1e-14)
    # decoupled diagonal: X = diag(max(0, −a_i/b_i))
    a, b = np.array([-1.0, 2.0, -0.5]), np.array([2.0, 1.0, 4.0])
    B = np.zeros((3, 3, 3, 3))
    for i in range(3):
        B[i, i, i, i] = b[i]
    for i in range(3):
        for j in range(3):
            if i != j:
                B[i, j, i, j] = 1.0  # acts on off-diagonal entries only
    res = solve(jnp.asarray(np.diag(a)), jnp.asarray(B))
    np.testing.assert_allclose(np.asarray(res.X), np.diag(np.maximum(0, -a / b)), atol=1e-10)
    # interior: α = −B[X*] for X* ≻ 0 gives X* back; rotation covariance
    rng = np.random.default_rng(0)
    G = rng.normal(size=(6, 8))
    M = G @ G.T
    Xs = np.array([[1.0, 0.2, 0.1], [0.2, 0.8, -0.3], [0.1, -0.3, 0.6]])
    a = -M @ np.asarray(jsvec(jnp.asarray(Xs)))
    res = solve_svec(jnp.asarray(a), jnp.asarray(M), 3)
    np.testing.assert_allclose(np.asarray(res.X), Xs, atol=1e-10)
    # operator_matrix: M svec(X) = svec(B[X]) for a Gram tensor B_ijkl = ⟨G_ij, G_kl⟩
    Gs = rng.normal(size=(3, 3, 7))
    Gs = Gs + Gs.transpose(1, 0, 2)
    B = np.einsum("ijr,klr->ijkl", Gs, Gs)
    X = rng.normal(size=(3, 3))
    X = X + X.T
    Mb = np.asarray(jop(jnp.asarray(B)))
    np.testing.assert_allclose(Mb @ np.asarray(jsvec(jnp.asarray(X))),
                               np.asarray(jsvec(jnp.asarray(np.einsum("ijkl,kl->ij", B, X)))), rtol=1e-12)
    res = solve(jnp.asarray(-np.eye(3)), jnp.asarray(B))
    np.testing.assert_allclose(np.asarray(res.X), np.asarray(solve_svec(
        jsvec(jnp.asarray(-np.eye(3))), jnp.asarray(Mb), 3).X), atol=1e-9)


# ---------------------------------------------------------------- tracking


# lanczos (the tracker's default) in make test; lobpcg under make test-all (the lobpcg tracker is held in
# make test by test_tracker_resolves_eigenvalues_locked_together and the eigsh_top_k lobpcg tests)
@pytest.mark.parametrize("method", ["lanczos", pytest.param("lobpcg", marks=pytest.mark.slow)])
def test_tracker_grows_and_matches_dense_eigh(method):
    loss, params = _problem("mlp")
    flat, unravel = ravel_pytree(params)
    H = np.asarray(jax.jit(jax.hessian(lambda f: loss(unravel(f))))(flat))
    evals, evecs = np.linalg.eigh(H)
    evals, evecs = evals[::-1], evecs[:, ::-1]
    thr = evals[2] / 0.75 * 0.99  # fraction·thr just below λ3: grows to λ1..λ3 plus the first below
    floss = lambda p, d: loss(p)  # noqa: E731
    tr = EigenTracker(hessian_matvec(floss), threshold=thr, fraction=0.75, k_init=3, k_max=6,
                      method=method, tol=1e-9, max_iters=3000)
    res = tr((params, None, None), None, key=jax.random.key(0))
    k = res.values.shape[0]
    assert k == 4 and res.converged and res.num_matvecs > 0, (method, k)
    np.testing.assert_allclose(np.asarray(res.values), evals[:k], rtol=1e-7)
    overlap = np.abs(np.sum(np.asarray(res.vectors) * evecs[:, :k].T, axis=1))
    np.testing.assert_allclose(overlap, 1.0, atol=1e-6)
    # warm start from the answer: converged at once, same signs
    again = tr((params, None, None), res.vectors, key=jax.random.key(1))
    assert again.num_matvecs < res.num_matvecs
    assert np.all(np.sum(np.asarray(again.vectors) * np.asarray(res.vectors), axis=1) > 0.99)


def test_align_signs_and_rayleigh_ritz():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(10, 10))
    A = A + A.T
    evals, evecs = np.linalg.eigh(A)
    V = jnp.asarray(evecs[:, ::-1][:, :3].T)
    flipped = V * jnp.array([[-1.0], [1.0], [-1.0]])
    np.testing.assert_allclose(np.asarray(align_signs(flipped, V)), np.asarray(V))
    Q = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    vals, Y, AY, res = rayleigh_ritz(lambda v: jnp.asarray(A) @ v, jnp.asarray(Q) @ V)
    np.testing.assert_allclose(np.asarray(vals), evals[::-1][:3], rtol=1e-12)
    assert float(jnp.max(res)) < 1e-12


def test_tracker_resolves_eigenvalues_locked_together():
    """A central flow holds several eigenvalues at exactly 2 (a degenerate cluster). The tracker of the
    central flows (LOBPCG, warm-started from the previous block) must return the whole cluster; dense
    ``eigh`` is the oracle. (Single-vector Lanczos from the sum of the previous rows sees one direction per
    eigenspace and returned 2, 2, 1.906 where the truth was 2, 2, 1.998: the overshoot of issue η = 0.9.)"""
    rng = np.random.default_rng(3)
    n = 60
    Q = np.linalg.qr(rng.normal(size=(n, n)))[0]
    evals = np.concatenate([[2.0, 2.0, 2.0, 1.9], rng.uniform(-0.5, 1.4, n - 4)])
    A = jnp.asarray((Q * evals) @ Q.T)
    mv = lambda args, v: args @ v  # noqa: E731
    # previous block: the cluster's eigenvectors slightly rotated (the flow moved)
    V0 = Q[:, :4] + 1e-3 * rng.normal(size=(n, 4))
    V0 = jnp.asarray(np.linalg.qr(V0)[0].T)
    tr = EigenTracker(mv, threshold=2.0, fraction=0.75, k_init=4, k_max=4, method="lobpcg", tol=1e-9,
                      max_iters=4000)
    res = tr(A, V0, key=jax.random.key(0))
    np.testing.assert_allclose(np.asarray(res.values), [2.0, 2.0, 2.0, 1.9], atol=1e-9)
    P = np.asarray(res.vectors).T
    proj = Q[:, :3].T @ P[:, :3]  # the cluster's span is recovered
    np.testing.assert_allclose(np.linalg.svd(proj, compute_uv=False), 1.0, atol=1e-8)
