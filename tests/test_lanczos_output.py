"""lanczos_top_k returns the Ritz pairs of its last check, also when the budget ends on a restart.

The Ritz vectors are formed once after the loop (not every step); when the last step restarted the
basis, they are read back from the restart's first rows. Oracle: Rayleigh–Ritz on an explicit
orthonormal basis of the Krylov space K_m(A, v0) (numpy QR), for a known-spectrum matrix in float64.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynamics.curvature.lanczos import lanczos_top_k


def krylov_ritz(A, v0, m, k):
    K = np.empty((A.shape[0], m))
    K[:, 0] = v0 / np.linalg.norm(v0)
    for i in range(1, m):
        w = A @ K[:, i - 1]
        K[:, i] = w / np.linalg.norm(w)
    Q = np.linalg.qr(K)[0]
    theta, S = np.linalg.eigh(Q.T @ A @ Q)
    return theta[::-1][:k], (Q @ S[:, ::-1][:, :k]).T


@pytest.mark.parametrize("max_iters", [5, 6])  # 6 = ncv: the last step restarts the basis
def test_ritz_pairs_of_the_last_step(x64, max_iters):
    n, k, ncv = 40, 2, 6
    rng = np.random.default_rng(0)
    Q = np.linalg.qr(rng.normal(size=(n, n)))[0]
    A = (Q * np.linspace(0.0, 5.0, n)) @ Q.T
    v0 = rng.normal(size=n)
    theta, X, rel, it, done = jax.jit(
        lambda v: lanczos_top_k(lambda u: jnp.asarray(A) @ u, v, k, tol=1e-14,
                                max_iters=max_iters, ncv=ncv))(jnp.asarray(v0))
    assert int(it) == max_iters and not bool(done)
    ref_theta, ref_X = krylov_ritz(A, v0, max_iters, k)
    np.testing.assert_allclose(np.asarray(theta), ref_theta, rtol=1e-10)
    X = np.asarray(X)
    signs = np.sign(np.sum(X * ref_X, axis=1, keepdims=True))
    np.testing.assert_allclose(X * signs, ref_X, atol=1e-8)
    # the reported residuals are those of these pairs
    true_rel = np.linalg.norm(X @ A - theta[:, None] * X, axis=1) / np.max(np.abs(ref_theta))
    np.testing.assert_allclose(np.asarray(rel), true_rel, rtol=1e-6)
