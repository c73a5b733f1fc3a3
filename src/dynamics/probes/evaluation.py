"""Evaluation probe: loss and accuracy on the test split and, optionally, on the whole training set."""

from dynamics.probes.base import PROBES, Probe, ProbeContext
from dynamics.train.step import evaluate


@PROBES.register("eval")
def test_metrics(ctx: ProbeContext, params, key, *, every: int, train: bool = False, **_) -> Probe:
    """Metrics ``test_loss`` (and ``test_accuracy`` for classification) on the whole test split; with
    ``train``, also ``full_train_loss`` (and ``full_train_accuracy``) on the whole training set, which
    is smoother than the per-step minibatch loss for comparing runs at matched times."""
    del params, key
    run = evaluate(ctx.apply_fn, ctx.loss, ctx.dataset.num_classes > 0)
    data = (ctx.dataset.x_test, ctx.dataset.y_test)
    if train:
        data += (ctx.dataset.x_train, ctx.dataset.y_train)

    def fn(train_state, state, key, x, y, *train_data):
        del key
        out = {f"test_{k}": v for k, v in run(train_state.params, x, y).items()}
        if train_data:
            out.update({f"full_train_{k}": v
                        for k, v in run(train_state.params, *train_data).items()})
        return out, state

    return Probe("eval", every, None, fn, data)
