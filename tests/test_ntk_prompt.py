"""Task ntk_prompt: the synthetic corpus, the prompt / head outputs, the kernel path, the claim, config errors.

The kernel path (flat Jacobians → eNTK, A-SignGD kernel, linearized model, kernel GD) is checked against
the library's ``empirical_ntk`` / ``asymmetric_sign_kernel`` / ``linearized_apply`` /
``gradient_descent_mse`` and against GD fine-tuning of a tiny encoder with a small step (error O(lr)).
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dynamics.claims import CLAIMS
from dynamics.data import corpus
from dynamics.errors import ConfigError
from dynamics.losses import cross_entropy, mse
from dynamics.models.encoder import Encoder, EncoderConfig, MaskedLM, init_masked_lm
from dynamics.ntk import asymmetric_sign_kernel, empirical_ntk, gradient_descent_mse, linearized_apply
from dynamics.run import run
from dynamics.tasks import ntk_prompt_kernels as kern
from dynamics.tasks import ntk_prompt_model as model

TINY = EncoderConfig(vocab_size=len(corpus.VOCAB), hidden=8, layers=1, heads=2, intermediate=16,
                     max_len=corpus.MAX_LEN)
POLARITY = {i: 1 for i in corpus._LEXICON[(1, False)]} | {i: -1 for i in corpus._LEXICON[(0, False)]}


def _sentiment(words) -> int:
    """Majority polarity of a sentence's sentiment words: 1 positive, 0 negative."""
    return int(sum(POLARITY.get(w, 0) for w in words) > 0)


def test_corpus_is_deterministic_and_templates_agree_with_the_sentiment():
    a = corpus.pretraining_corpus(3, 300)
    np.testing.assert_array_equal(a, corpus.pretraining_corpus(3, 300))
    assert not np.array_equal(a, corpus.pretraining_corpus(4, 300))
    assert a.shape == (300, corpus.MAX_LEN) and a.dtype == np.int32
    it, was, dot = corpus.TEMPLATE_IDS
    template_lexicon = set(corpus._LEXICON[(0, True)] + corpus._LEXICON[(1, True)])
    kinds = {"label": 0, "adjective": 0, "plain": 0}
    for row in a:
        words = row[row != corpus.PAD].tolist()
        assert words[0] == corpus.CLS and words[-1] == corpus.SEP
        assert corpus.PAD not in row[:len(words)] and {corpus.MASK, corpus.CLS, corpus.SEP}.isdisjoint(words[1:-1])
        body = words[1:-1]
        if body[-4:-2] == [it, was] and body[-1] == dot:
            sentence, slot = body[:-4], body[-2]
            if slot in corpus.LABEL_IDS:  # "it was great/terrible ." follows the majority sentiment
                kinds["label"] += 1
                assert corpus.LABEL_IDS.index(slot) == _sentiment(sentence)
                assert all(w in template_lexicon for w in sentence if w in POLARITY)
            else:
                kinds["adjective"] += 1
                assert corpus.VOCAB[slot] in corpus.NEUTRAL_ADJECTIVES
        else:
            kinds["plain"] += 1
            assert not set(body) & {it, was, dot, *corpus.LABEL_IDS}
    assert kinds["label"] > 200 and kinds["adjective"] > 10 and kinds["plain"] > 10  # 0.8 / 0.1 / 0.1


def test_the_control_corpus_never_shows_the_label_words():
    """``control_template_fraction=0``: no "it was great/terrible", so the prompt's label words are never
    a target in the control's pre-training (a meaningless prompt); "it was <adjective> ." still occurs."""
    ids = corpus.pretraining_corpus(3, 400, template_fraction=0.0, other_fraction=0.1)
    assert not np.isin(ids, corpus.LABEL_IDS).any()
    it, was, _ = corpus.TEMPLATE_IDS
    assert 10 < sum(it in row and was in row for row in ids.tolist()) < 80  # ~10 % of 400


def test_downstream_labels_and_prompt_layout():
    d = corpus.downstream(0, "test", 40)
    np.testing.assert_array_equal(d.labels, np.arange(40) % 2)
    assert [_sentiment(s) for s in d.sentences] == d.labels.tolist()
    assert corpus.downstream(0, "train", 40).sentences != d.sentences  # different streams
    prompt, plain = corpus.prompt_inputs(d.sentences), corpus.plain_inputs(d.sentences)
    it, was, dot = corpus.TEMPLATE_IDS
    for s, p, q in zip(d.sentences, prompt, plain):
        n = len(s)
        assert p[:n + 6].tolist() == [corpus.CLS, *s, it, was, corpus.MASK, dot, corpus.SEP]
        assert (p == corpus.MASK).sum() == 1 and (p[n + 6:] == corpus.PAD).all()
        assert q[:n + 2].tolist() == [corpus.CLS, *s, corpus.SEP] and (q[n + 2:] == corpus.PAD).all()
    assert corpus.decode(prompt[0]).startswith("[CLS] ") and corpus.decode(prompt[0]).endswith(
        "it was [MASK] . [SEP]")


@pytest.fixture(scope="module")
def tiny():
    """A tiny random masked LM (float64), a head, a few prompt / plain inputs, and the prompt's flat
    Jacobians at θ₀ (blocks of 4 for 6 examples: padding and concatenation are exercised)."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    params = jax.tree.map(lambda p: p.astype(jnp.float64), init_masked_lm(TINY, jax.random.key(0)))
    head = model.init_head(jax.random.key(1), TINY.hidden, 2, 0.5, jnp.float64)
    d = corpus.downstream(1, "train", 6)
    x = jnp.asarray(corpus.prompt_inputs(d.sentences))
    f0, j0 = kern.jacobian_fn(model.prompt_apply_fn(TINY), 4)(params, x)
    yield {"mlm": params, "head": {"encoder": params["encoder"], "head": head}, "prompt_x": x,
           "plain_x": jnp.asarray(corpus.plain_inputs(d.sentences)), "y": jnp.asarray(d.labels),
           "f0": f0, "j0": j0}
    jax.config.update("jax_enable_x64", previous)


@pytest.fixture(scope="module")
def finetune_gd(tiny):
    """One compiled GD fine-tuning program (chunks of 5 steps) for the tiny prompt model."""
    tx = optax.inject_hyperparams(kern.gd_or_adam)(learning_rate=1.0, adam=0.0)
    return kern.make_finetune(model.prompt_apply_fn(TINY), cross_entropy, tx, chunk=5)


def test_prompt_output_is_the_label_word_logits_at_the_mask(tiny):
    x = tiny["prompt_x"]
    logits = np.asarray(jax.jit(MaskedLM(TINY).apply)({"params": tiny["mlm"]}, x,
                                                       (x != corpus.PAD).astype(jnp.int32)))
    xs = np.asarray(x)
    want = np.stack([logits[i, list(xs[i]).index(corpus.MASK)][list(corpus.LABEL_IDS)] for i in range(len(xs))])
    assert tiny["f0"].shape == (len(xs), 2)
    np.testing.assert_allclose(tiny["f0"], want, rtol=1e-12)  # f = prompt_apply_fn, via the Jacobian program
    assert [corpus.VOCAB[i] for i in corpus.LABEL_IDS] == ["terrible", "great"]  # class 0, class 1


def test_head_output_is_a_linear_map_of_the_cls_state(tiny):
    x = tiny["plain_x"]
    h = Encoder(TINY).apply({"params": tiny["mlm"]["encoder"]}, x, (x != corpus.PAD).astype(jnp.int32))
    want = h[:, 0] @ tiny["head"]["head"]["kernel"] + tiny["head"]["head"]["bias"]
    np.testing.assert_allclose(model.head_apply_fn(TINY)(tiny["head"], x), want, rtol=1e-12)


@pytest.mark.slow  # make test-all; flat_jacobian itself: tests/test_ntk.py
def test_flat_jacobians_give_the_librarys_kernels_and_linearization(tiny):
    apply_fn, params, x, j = model.prompt_apply_fn(TINY), tiny["mlm"], tiny["prompt_x"], tiny["j0"]
    moved = jax.tree.map(lambda p: p + 1e-3 * jnp.cos(jnp.arange(p.size).reshape(p.shape)), params)

    @jax.jit
    def library(params, moved, x1, x2):
        return (empirical_ntk(apply_fn, params, x1, x2), asymmetric_sign_kernel(apply_fn, params, x1, x2),
                linearized_apply(apply_fn, params, moved, x1))

    ntk, asign, lin = library(params, moved, x[:4], x[4:])
    np.testing.assert_allclose(kern.kernel(j[:4], j[4:]), ntk, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(kern.kernel(j[:4], jnp.sign(j[4:])), asign, rtol=1e-9, atol=1e-12)
    delta = jax.flatten_util.ravel_pytree(moved)[0] - jax.flatten_util.ravel_pytree(params)[0]
    np.testing.assert_allclose(tiny["f0"][:4] + jnp.einsum("iap,p->ia", j[:4], delta), lin, rtol=1e-10,
                               atol=1e-12)


def test_kernel_gradient_descent_is_gradient_descent_mse_for_mse(x64):
    j = jax.random.normal(jax.random.key(0), (7, 3, 20), jnp.float64)
    k_tr, k_te = kern.kernel(j[:5], j[:5]), kern.kernel(j[5:], j[:5])
    f0 = jax.random.normal(jax.random.key(1), (7, 3), jnp.float64)
    y = jnp.array([0, 2, 1, 1, 0])
    f_tr, f_te, losses = kern.kernel_gradient_descent(k_tr, k_te, f0[:5], f0[5:], y, mse, 0.01, 25)
    want = gradient_descent_mse(k_tr, jax.nn.one_hot(y, 3, dtype=jnp.float64), 25, k_test_train=k_te,
                                fx_train_0=f0[:5], fx_test_0=f0[5:], learning_rate=0.01 * 3, discrete=True)
    np.testing.assert_allclose(f_tr, want.train, rtol=1e-10)
    np.testing.assert_allclose(f_te, want.test, rtol=1e-10)
    assert losses.shape == (26,) and losses[0] == pytest.approx(float(mse(f0[:5], y)))
    assert losses[-1] == pytest.approx(float(mse(f_tr, y)))


def test_kernel_gd_matches_gd_fine_tuning_to_first_order_in_the_step(tiny, finetune_gd):
    """GD on the network vs kernel GD with its eNTK at θ₀ (10 steps): the relative gap is O(lr)."""
    apply_fn, params, x, y, f0 = model.prompt_apply_fn(TINY), tiny["mlm"], tiny["prompt_x"], tiny["y"], tiny["f0"]
    k0 = kern.kernel(tiny["j0"], tiny["j0"])
    gaps = []
    for rel in (0.02, 0.01):
        lr = rel * len(y) / kern.top_eigenvalue(k0, shift_invariant=True)
        init, run = finetune_gd
        trained, losses, done = kern.train_until(partial(init, lr=lr), run, params, x, y, jnp.ones(len(y)),
                                                 max_steps=10, stop=lambda p, loss: False)
        assert not done
        assert len(losses) == 11 and losses[-1] < losses[0]
        f_kgd, _, kgd_losses = kern.kernel_gradient_descent(k0, k0, f0, f0, y, cross_entropy, lr, 10)
        np.testing.assert_allclose(kgd_losses[0], losses[0], rtol=1e-12)
        f_ft = apply_fn(trained, x)
        gaps.append(float(jnp.linalg.norm(f_ft - f_kgd) / jnp.linalg.norm(f_ft - f0)))
    assert gaps[0] < 0.1
    assert 1.6 < gaps[0] / gaps[1] < 2.5, gaps  # first order: halving the step halves the gap


def test_fine_tuning_ignores_padding_rows_and_stops_at_the_target(tiny, finetune_gd):
    """Rows with weight 0 do not change fine-tuning (one compiled program serves every k), and
    ``train_until`` stops after the first chunk where its rule holds."""
    params, x, y = tiny["mlm"], tiny["prompt_x"], tiny["y"]
    init, run = finetune_gd
    w = jnp.array([1.0, 1, 1, 1, 0, 0])
    other = jnp.concatenate([x[:4], x[:2]]), jnp.concatenate([y[:4], 1 - y[:2]])
    p1, _, l1, last1 = run(params, init(params, 0.5), x, y, w)
    p2, _, l2, _ = run(params, init(params, 0.5), *other, w)
    np.testing.assert_allclose(l1, l2, rtol=1e-12)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14), p1, p2)
    assert l1[0] == pytest.approx(float(cross_entropy(tiny["f0"][:4], y[:4])))
    _, curve, done = kern.train_until(partial(init, lr=0.5), run, params, x, y, w, max_steps=20,
                                      stop=lambda p, loss: loss <= float(last1) + 1e-9)
    assert done and len(curve) == 6 and curve[-1] == pytest.approx(float(last1))  # stopped after one chunk


@pytest.mark.parametrize("adam", [0.0, 1.0])
def test_gd_or_adam_is_optax_sgd_or_adam(adam):
    params = {"a": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array([[0.3]])}
    tx = optax.inject_hyperparams(kern.gd_or_adam)(learning_rate=0.1, adam=adam, b1=0.8, b2=0.9, eps=1e-6)
    ref = optax.adam(0.1, b1=0.8, b2=0.9, eps=1e-6) if adam else optax.sgd(0.1)
    s, r = tx.init(params), ref.init(params)
    for t in range(3):
        grads = jax.tree.map(lambda p: jnp.sin(p * (t + 1)), params)
        u, s = tx.update(grads, s, params)
        v, r = ref.update(grads, r, params)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), u, v)


def test_top_eigenvalue_ignores_logit_shifts_for_cross_entropy():
    shift = jnp.ones((3, 3, 2, 2))  # a kernel acting only on the all-equal logit direction
    eye = jnp.eye(3)[:, :, None, None] * jnp.eye(2)
    assert kern.top_eigenvalue(eye + 10 * shift) == pytest.approx(1 + 10 * 3 * 2)
    assert kern.top_eigenvalue(eye + 10 * shift, shift_invariant=True) == pytest.approx(1.0)


def test_mlm_loss_is_deterministic_and_about_uniform_at_init():
    params = init_masked_lm(TINY, jax.random.key(0))
    ids = jnp.asarray(corpus.pretraining_corpus(0, 16))
    loss = jax.jit(model.mlm_loss(TINY, 0.15))
    a, b = loss(params, ids, jax.random.key(5)), loss(params, ids, jax.random.key(5))
    assert a == b and np.isfinite(a) and a != loss(params, ids, jax.random.key(6))
    assert abs(float(a) - np.log(len(corpus.VOCAB))) < 0.5  # random init: about uniform predictions


@pytest.mark.parametrize("override, key", [
    ("train.loss=mse", "train.loss"),
    ("ntk.prompt.relative_lr=0", "ntk.prompt.relative_lr"),
    ("data.n_train=20", "data.n_train"),  # k = 16 per class needs a pool of >= 32
    ("ntk.prompt.kernel_ridge=-1", "ntk.prompt.kernel_ridge"),
    ("ntk.prompt.encoder_heads=3", "ntk.prompt.encoder_heads"),
    ("ntk.prompt.other_fraction=0.5", "ntk.prompt.other_fraction"),
    ("ntk.prompt.control_template_fraction=0.95", "ntk.prompt.control_template_fraction"),  # > 1 − 0.1
])
def test_bad_values_fail_before_anything_is_built(compose, tmp_path, override, key):
    with pytest.raises(ConfigError, match=rf"^{key}=.* is invalid: allowed "):
        run(compose("+exp=ntk_prompt", override, "claim.seeds=1"), tmp_path)


# ------------------------------------------------------------------------------------------- the claim

def _run(acc_gap, gap, lin, fit=1.0):
    return {"sgd": {"accuracy_gap": acc_gap, "margin_function_gap": gap, "margin_linearization_gap": lin,
                    "ft_train_acc": fit}}


def _results(prompt=(0.01, 0.3, 0.25), control=(0.2, 0.97, 1.05), head=(0.0, 0.4, 0.6), fit=1.0):
    return {"k16": {"prompt": _run(*prompt, fit=fit), "control": _run(*control), "head": _run(*head)}}


@pytest.mark.parametrize("change, failed", [
    ({}, []),
    ({"prompt": (0.06, 0.3, 0.25)}, ["k16_accuracy_gap"]),
    ({"prompt": (0.01, 0.72, 0.25)}, ["k16_margin_gap"]),
    ({"prompt": (0.01, 0.3, 0.72)}, ["k16_linearization_gap"]),
    ({"control": (0.2, 0.25, 1.05)}, ["k16_control_margin_gap", "k16_gap_vs_control"]),  # tracks better
    ({"control": (0.2, 0.72, 1.05), "prompt": (0.01, 0.7, 0.25)}, []),  # only the margin bound separates
    ({"control": (0.04, 0.5, 0.6)}, ["k16_control_margin_gap"]),  # the checks do not discriminate
    ({"head": (0.0, 0.1, 0.1)}, []),  # the head is reported, not judged
])
def test_ntk_prompt_claim_checks_every_criterion(change, failed):
    out = CLAIMS.get("ntk_prompt")({}, {"results": _results(**change)})
    assert out["passed"] is (not failed)
    assert [k for k, c in out["checks"].items() if not c["passed"]] == failed
    assert out["gap_vs_head"]["k16"] == pytest.approx(_results(**change)["k16"]["prompt"]["sgd"][
        "margin_function_gap"] / _results(**change)["k16"]["head"]["sgd"]["margin_function_gap"])


def test_ntk_prompt_claim_bounds_are_inclusive_and_sourced():
    out = CLAIMS.get("ntk_prompt")({}, {"results": _results(prompt=(0.05, 0.7071, 0.7071))})
    assert out["passed"] is True
    sources = {k: c["source"] for k, c in out["checks"].items()}
    assert {sources[f"k16_{n}"] for n in ("accuracy_gap", "margin_gap", "linearization_gap")} == {"calibrated"}
    assert sources["k16_control_margin_gap"] == "calibrated"
    assert sources["k16_gap_vs_control"] == "pre-registered"
    assert out["checks"]["k16_gap_vs_control"]["se_units"] == 2.0  # held by 2 SE under the mean rule
    assert out["checks"]["k16_gap_vs_control"]["value"] == pytest.approx(0.97 - 0.7071)
    assert out["gap_vs_control"]["k16"] == pytest.approx(0.7071 / 0.97)


def test_ntk_prompt_claim_fails_without_its_evidence():
    claim = CLAIMS.get("ntk_prompt")
    assert claim({}, {"results": {}})["passed"] is False  # never a vacuous pass
    no_control = _results()
    del no_control["k16"]["control"]
    out = claim({}, {"results": no_control})
    assert out["passed"] is False and "missing k16 control GD run" in out["failed"]
    assert not out["checks"]["k16_control_margin_gap"]["passed"]
    assert out["missing"] == ["k16 control GD run"]
    unfit = claim({}, {"results": _results(fit=0.97)})
    assert unfit["passed"] is False
    assert "missing k16 prompt fitting its training set (train accuracy 0.97)" in unfit["failed"]
    control_unfit = _results()
    control_unfit["k16"]["control"]["sgd"]["ft_train_acc"] = 0.87  # a fixed-budget control need not fit
    out = claim({}, {"results": control_unfit})
    assert out["passed"] is True and out["control_train_acc"] == {"k16": 0.87}


# ------------------------------------------------------------------------- the claim at full size (slow)

@pytest.mark.slow  # make test-all: ~12 min (5 seeds) + ~5 min (control, 2 seeds) on 2 cores
def test_full_size_claim_passes_on_the_mean_over_seeds_and_the_meaningless_prompt_fails(compose, tmp_path):
    out = run(compose("+exp=ntk_prompt"), tmp_path / "claim")
    v = out["verdict"]
    assert v["passed"] is True, v["failed"]
    assert v["seeds"] == [0, 1, 2, 3, 4] and not v["dropped"]
    for k in ("k16", "k64"):  # every check judged on its mean over the 5 seeds, against its bound
        assert v["checks"][f"{k}_margin_gap"]["mean"] <= 0.7071 < v["checks"][f"{k}_control_margin_gap"]["mean"]
        gap = v["checks"][f"{k}_gap_vs_control"]
        assert gap["value"] == pytest.approx(gap["mean"] - 2 * gap["se"]) and gap["value"] > 0
    control = run(compose("+exp=ntk_prompt", "ntk.prompt.template_fraction=0", "claim.seeds=2"),
                  tmp_path / "control")["verdict"]
    assert control["passed"] is False
    assert {"k16_margin_gap", "k16_linearization_gap", "k64_margin_gap"} <= {
        name for name, c in control["checks"].items() if not c["passed"]}
