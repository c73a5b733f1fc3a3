"""Held-out evaluation probe: loss and accuracy on the test split."""

from dynamics.probes.base import PROBES, Probe, ProbeContext
from dynamics.train.step import evaluate


@PROBES.register("eval")
def test_metrics(ctx: ProbeContext, params, key, *, every: int, **_) -> Probe:
    """Metrics ``test_loss`` (and ``test_accuracy`` for classification) on the whole test split."""
    del params, key
    run = evaluate(ctx.apply_fn, ctx.loss, ctx.dataset.num_classes > 0)

    def fn(train_state, state, key, x, y):
        del key
        return {f"test_{k}": v for k, v in run(train_state.params, x, y).items()}, state

    return Probe("eval", every, None, fn, (ctx.dataset.x_test, ctx.dataset.y_test))
