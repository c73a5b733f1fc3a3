"""Your own model, optimizer and data from config (``model.name=target``, ``optimizer.name=target``,
``data.name=npz``, ``data.name=digits``), each checked against the same callable or arrays used by
hand; bad targets fail before compiling with one line."""

from pathlib import Path

import jax
import numpy as np
import optax
import pytest

from dynamics.errors import ConfigError
from dynamics.io import read_metrics
from dynamics.run import run

ROOT = Path(__file__).resolve().parents[1]
OFF = ("probes.sharpness.every=0", "probes.eval.every=0")


@pytest.fixture
def examples(monkeypatch):
    """``examples.custom`` importable, as it is under ``python -m dynamics.run`` from the root."""
    monkeypatch.syspath_prepend(str(ROOT))
    import examples.custom as custom

    return custom


@pytest.fixture
def blobs_npz(tmp_path, examples):
    path = tmp_path / "blobs.npz"
    np.savez(path, **examples.blobs())
    return path


def plain(compose, npz, *overrides):
    return compose("+exp=smoke", "train.batch_size=null", "data.name=npz", f"data.path={npz}",
                   "data.n_train=null", "data.n_test=null", "train.steps=6", "train.chunk=3",
                   "optimizer.lr=0.05", *OFF, *overrides)


def hand_losses(model_init, apply, tx, arrays, steps, key):
    """The model and optimizer driven by hand on the npz arrays (MSE to one-hot, as the trainer)."""
    from dynamics.losses import mse

    x, y = np.asarray(arrays["x_train"]), np.asarray(arrays["y_train"])
    params = model_init(key)
    state = tx.init(params)
    loss_fn = lambda p: mse(apply(p, x), y)  # noqa: E731
    out = []
    for _ in range(steps):
        value, grads = jax.value_and_grad(loss_fn)(params)
        out.append(float(value))
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return out


@pytest.mark.parametrize("target", ["linen_mlp", "nnx_mlp", "linear_pair"])
def test_model_target_of_each_kind_trains_like_the_callable_by_hand(compose, tmp_path, examples,
                                                                   blobs_npz, target):
    from flax import nnx

    from dynamics.models.base import from_flax
    from dynamics.train import rng_streams

    cfg = plain(compose, blobs_npz, "model.name=target", f"model.target=examples.custom:{target}",
                "+model.kwargs.width=16" if target != "linear_pair" else "+model.kwargs.scale=0.2")
    summary = run(cfg, tmp_path)
    assert summary["status"] == "finished"
    arrays = examples.blobs()
    key = rng_streams(cfg.seed)["init"]
    if target == "linen_mlp":
        module = examples.linen_mlp(out_dim=3, width=16)
        model = from_flax(module, (8,))
        init, apply = model.init, model.apply
    elif target == "nnx_mlp":
        def init(k):
            return nnx.split(examples.nnx_mlp((8,), 3, nnx.Rngs(k), width=16), nnx.Param, ...)[1]

        graphdef, _, rest = nnx.split(examples.nnx_mlp((8,), 3, nnx.Rngs(0), width=16), nnx.Param, ...)

        def apply(p, x):
            return nnx.merge(graphdef, p, rest)(x)
    else:
        init, apply = examples.linear_pair((8,), 3, scale=0.2)
    want = hand_losses(init, apply, optax.sgd(0.05), arrays, 6, key)
    got = [r["loss"] for r in read_metrics(tmp_path)][:6]
    assert got == pytest.approx(want, rel=1e-5)
    assert summary["num_params"] == sum(np.size(p) for p in jax.tree.leaves(init(key)))


def test_optimizer_target_is_the_callable_with_traced_kwargs(compose, tmp_path, examples,
                                                             blobs_npz):
    from dynamics.models import build_model
    from dynamics.train import rng_streams

    cfg = plain(compose, blobs_npz, "optimizer.name=target",
                "optimizer.target=examples.custom:clipped_sgd", "+optimizer.kwargs.max_norm=0.5")
    summary = run(cfg, tmp_path)
    assert summary["hparams"]["max_norm"] == 0.5 and summary["hparams"]["learning_rate"] == 0.05
    model = build_model("mlp", (8,), 3, widths=[16])
    want = hand_losses(model.init, model.apply, examples.clipped_sgd(0.05, 0.5), examples.blobs(), 6,
                       rng_streams(cfg.seed)["init"])
    got = [r["loss"] for r in read_metrics(tmp_path)][:6]
    assert got == pytest.approx(want, rel=1e-5)
    clipped_differs = hand_losses(model.init, model.apply, optax.sgd(0.05), examples.blobs(), 6,
                                  rng_streams(cfg.seed)["init"])
    assert clipped_differs[-1] != pytest.approx(want[-1], rel=1e-4)  # the clip is active here


def test_all_three_of_your_own_run_the_eos_claim_config(compose, tmp_path, blobs_npz):
    """``+exp=eos`` with your model, optimizer and data: the run finishes, measures λ_max, and the EoS
    verdict is "not applicable" (no threshold is known for an arbitrary transformation)."""
    cfg = compose("+exp=eos", "model.name=target", "model.target=examples.custom:linen_mlp",
                  "optimizer.name=target", "optimizer.target=examples.custom:clipped_sgd",
                  "optimizer.lr=0.05", "data.name=npz", f"data.path={blobs_npz}", "data.n_train=null",
                  "data.n_test=null", "claim.seeds=1", "train.steps=20")
    summary = run(cfg, tmp_path)
    assert summary["status"] == "finished"
    assert summary["verdict"]["not_applicable"] == "not applicable: no known threshold for target"
    assert [r["sharpness"] for r in read_metrics(tmp_path) if "sharpness" in r]


def test_npz_regression_targets_and_digits(tmp_path):
    from sklearn.datasets import load_digits

    from dynamics.data import build_dataset

    rng = np.random.default_rng(1)
    arrays = {"x_train": rng.normal(size=(20, 3)), "y_train": rng.normal(size=20),
              "x_test": rng.normal(size=(5, 3)), "y_test": rng.normal(size=5)}
    np.savez(tmp_path / "reg.npz", **arrays)
    data = build_dataset("npz", jax.random.key(0), path=str(tmp_path / "reg.npz"), n_train=10)
    assert data.num_classes == 0 and data.out_dim == 1 and data.n_train == 10
    np.testing.assert_allclose(data.y_train[:, 0], arrays["y_train"][:10], rtol=1e-6)

    digits = build_dataset("digits", jax.random.key(0))
    assert (digits.x_train.shape, digits.x_test.shape, digits.num_classes) == ((1437, 64), (360, 64), 10)
    bunch = load_digits()
    order = np.random.default_rng(0).permutation(1797)
    np.testing.assert_allclose(digits.x_test, bunch.data[order][1437:] / 16.0, rtol=1e-6)
    np.testing.assert_array_equal(digits.y_train, bunch.target[order][:1437])
    assert float(digits.x_train.max()) == 1.0 and float(digits.x_train.min()) == 0.0


@pytest.mark.parametrize("overrides, message", [
    (("model.name=target", "model.target=nowhere.module:net"),
     "model.target='nowhere.module:net' is invalid: cannot import module 'nowhere.module'"),
    (("model.name=target", "model.target=examples.custom:missing"),
     "module 'examples.custom' has no 'missing'"),
    (("model.name=target", "model.target=examples.custom"), "allowed '<module>:<callable>'"),
    (("optimizer.name=target", "optimizer.target=examples.custom:blobs"),
     "optimizer.target='examples.custom:blobs' is invalid: it returned dict; allowed an optax "
     "GradientTransformation"),
    (("data.name=npz", "data.path=/nonexistent/x.npz"), "data.path='/nonexistent/x.npz' is invalid: "
                                                        "no such file"),
])
def test_bad_targets_fail_in_validation_with_one_line(compose, examples, overrides, message):
    from dynamics.validation import validate

    with pytest.raises(ConfigError) as err:
        validate(compose("+exp=smoke", *overrides))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_model_target_of_the_wrong_kind_fails_before_compiling(examples):
    from dynamics.models import build_model

    with pytest.raises(ConfigError, match="it returned dict; allowed a flax linen Module, a flax.nnx "
                                          "Module or an"):
        build_model("target", (8,), 3, target="examples.custom:blobs", kwargs={})


def test_npz_without_an_array_names_what_it_has(tmp_path):
    from dynamics.data.files import read_npz

    np.savez(tmp_path / "x.npz", x_train=np.zeros((2, 2)), y_train=np.zeros(2))
    with pytest.raises(ConfigError, match=r"lacks array\(s\) x_test, y_test \(has x_train, y_train\)"):
        read_npz(str(tmp_path / "x.npz"))
