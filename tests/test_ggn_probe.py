"""``probes.ggn_sharpness``: the trainer's logged GGN / empirical-Fisher top eigenvalue against the dense
JᵀH_ℓJ (and Σ gᵢgᵢᵀ/n) built from an explicit Jacobian, in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynamics.io import read_metrics
from dynamics.run import run


def dense_operator(cfg, loss, operator):
    from dynamics.data import build_dataset
    from dynamics.models import build_model
    from dynamics.train import rng_streams

    streams = rng_streams(cfg.seed)
    data = build_dataset("synthetic", streams["data"], dtype=jnp.float64, n_train=48, n_test=8, dim=8,
                         num_classes=4, teacher_width=64)
    model = build_model("mlp", data.input_shape, 4, widths=[8])
    params = jax.tree.map(lambda p: p.astype(jnp.float64), model.init(streams["init"]))
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    x, y = data.x_train, data.y_train
    jac = jax.jit(jax.jacobian(lambda w: model.apply(unravel(w), x)))(flat)  # (n, 4, P)
    n = x.shape[0]
    if operator == "empirical_fisher":
        from dynamics.losses import LOSSES

        per = jax.vmap(lambda xi, yi: jax.grad(lambda w: LOSSES.get(loss)(
            model.apply(unravel(w), xi[None]), yi[None]))(flat))(x, y)
        return per.T @ per / n
    if loss == "mse":
        h_out = np.broadcast_to(np.eye(4), (n, 4, 4)) / n
    else:
        p = jax.nn.softmax(model.apply(params, x), axis=-1)
        h_out = (jax.vmap(jnp.diag)(p) - p[:, :, None] * p[:, None, :]) / n
    return jnp.einsum("iap,iab,ibq->pq", jac, h_out, jac)


@pytest.mark.parametrize("loss, operator", [("mse", "ggn"), ("cross_entropy", "ggn"),
                                            ("mse", "empirical_fisher")])
def test_logged_ggn_sharpness_is_the_dense_top_eigenvalue(compose, tmp_path, loss, operator):
    cfg = compose("+exp=smoke", "precision=float64", "train.batch_size=null", "train.steps=5",
                  "train.chunk=5", "data.n_train=48", "data.n_test=8", "model.widths=[8]",
                  f"train.loss={loss}", "probes.sharpness.every=0", "probes.eval.every=0",
                  "probes.ggn_sharpness.every=5", "probes.ggn_sharpness.tol=1e-8",
                  "probes.ggn_sharpness.max_iters=300", f"probes.ggn_sharpness.operator={operator}")
    summary = run(cfg, tmp_path)
    assert summary["status"] == "finished"
    first = read_metrics(tmp_path)[0]
    want = float(np.linalg.eigvalsh(np.asarray(dense_operator(cfg, loss, operator)))[-1])
    assert first["ggn_sharpness"] == pytest.approx(want, rel=1e-6)
    assert first["ggn_sharpness_converged"] is True
