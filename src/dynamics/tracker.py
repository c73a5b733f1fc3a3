r"""``Tracker``: curvature and kernel metrics for your own JAX training loop.

One object, called once per step from any Python loop around jitted JAX code::

    tracker = Tracker(loss_fn, every=10, lr=lr, precond=True, trace_samples=20,
                      ntk_apply=apply_fn, ntk_inputs=x_probe, log_dir="runs/mine")
    for step in range(steps):
        row = tracker(step, params, x, y, opt_state=opt_state, loss=loss)  # before the update
        params, opt_state, loss = train_step(params, opt_state, x, y)
    tracker.plot()  # figures/sharpness.png, ... (matplotlib is imported only here)

Every ``every`` steps it measures, at ``params`` on the batch passed (``loss_fn(params, *batch)``):

- ``sharpness``: :math:`\lambda_{\max}(\nabla^2 L)` (top ``k``: ``sharpness_2``, …) by Lanczos,
  warm-started from the previous eigenvectors (a few HVPs per measurement instead of a cold ~25);
- ``precond_sharpness``: :math:`\lambda_{\max}(P^{-1}\nabla^2L)` with :math:`P` Adam's / RMSprop's
  diagonal preconditioner read from the optax ``opt_state`` (warm-started too);
- ``hessian_trace`` (+ ``hessian_trace_stderr``): Hutchinson with ``trace_samples`` probes;
- ``ntk_trace``, ``ntk_change``, ``ntk_alignment``: summaries of the empirical NTK of ``ntk_apply``
  on the probe inputs (mean diagonal, relative Frobenius distance to the first kernel, and the
  kernel-target alignment :math:`\langle K, YY^\top\rangle/(\|K\|\,\|YY^\top\|)` when
  ``ntk_targets`` is given); the last kernel is ``tracker.ntk``;
- any ``measures={name: fn(params, *batch) -> float | dict}`` you add (e.g. a GGN eigenvalue).

The measurements run as one compiled function (compiled once; the arrays ``loss_fn`` closes over are
passed as arguments, never baked in). Each call returns a plain dict of Python numbers (``step``,
the scalars you pass, and the metrics on measurement steps; a non-finite value stays ``nan``),
appended to ``tracker.rows`` and, with ``log_dir``, to ``log_dir/metrics.jsonl`` in the run format
(one JSON object per line, non-finite values as ``null``); :meth:`plot` writes the run's figures with the optimizer's stability threshold.
"""

import json
import math
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from dynamics.compiled import self_compiling
from dynamics.curvature.preconditioned import (adam_threshold, adaptive_preconditioner,
                                               gd_threshold, preconditioned_sharpness)
from dynamics.curvature.topk import top_eigenvalues
from dynamics.curvature.trace import hessian_trace
from dynamics.ntk.empirical import empirical_ntk

PyTree = object


def _keep_finite(new, old):
    """The new warm start where it is finite, else the old one (e.g. Adam before its first update)."""
    return jax.tree.map(lambda n, o: jnp.where(jnp.all(jnp.isfinite(n)), n, o), new, old)


def _eig_metrics(prefix, res):
    out = {prefix: res.values[0], f"{prefix}_matvecs": res.num_matvecs,
           f"{prefix}_converged": jnp.all(res.converged)}
    for i in range(1, res.values.shape[0]):
        out[f"{prefix}_{i + 1}"] = res.values[i]
    return out


def _batch_example(arguments):
    return (arguments["params"], *arguments["batch"])


@self_compiling(static=("k", "max_iters", "trace_samples", "sharpness", "precond", "precond_kw"),
                example=_batch_example)
def _measure(loss_fn, params, batch, opt_state, warm, seed, step, tol, *, k, max_iters,
             trace_samples, sharpness, precond, precond_kw):
    """All curvature metrics of one step in one compiled function: ``(metrics, new warm starts)``.

    ``seed`` and ``step`` are traced integers: the keys are made in here (an eager PRNG call would
    compile a program of its own) and a new step or seed reuses the compiled function.
    """

    def loss(p):
        return loss_fn(p, *batch)

    metrics, new_warm = {}, dict(warm)
    key = jax.random.fold_in(jax.random.key(seed), step)
    k_sharp, k_prec, k_trace = jax.random.split(key, 3)
    if sharpness:
        res = top_eigenvalues.raw(loss, params, k, key=k_sharp, tol=tol, max_iters=max_iters,
                                  init=warm["sharpness"])
        metrics.update(_eig_metrics("sharpness", res))
        new_warm["sharpness"] = _keep_finite(res.vectors, warm["sharpness"])
    if precond:
        P = adaptive_preconditioner(opt_state, **dict(precond_kw))
        res = preconditioned_sharpness.raw(loss, params, P, k, key=k_prec, tol=tol,
                                           max_iters=max_iters, init=warm["precond_sharpness"])
        metrics.update(_eig_metrics("precond_sharpness", res))
        new_warm["precond_sharpness"] = _keep_finite(res.vectors, warm["precond_sharpness"])
    if trace_samples:
        est = hessian_trace.raw(loss, params, key=k_trace, num_samples=trace_samples)
        metrics.update(hessian_trace=est.estimate, hessian_trace_stderr=est.stderr)
    return metrics, new_warm


def _python(value):
    """A JSON-ready Python number (or the value unchanged if it is not a scalar)."""
    arr = np.asarray(value)
    if arr.ndim != 0:
        return value
    if arr.dtype == bool:
        return bool(arr)
    if np.issubdtype(arr.dtype, np.integer):
        return int(arr)
    if np.issubdtype(arr.dtype, np.floating):
        return float(arr)
    return value


class Tracker:
    """Sharpness, preconditioned sharpness, Hessian trace and eNTK summaries for your own loop.

    Args:
      loss_fn: ``loss_fn(params, *batch) -> scalar``; ``batch`` is what you pass at each call (none
        if the loss closes over its data).
      every: measure when ``step % every == 0`` (0 turns the curvature metrics off).
      sharpness: measure :math:`\\lambda_{\\max}(\\nabla^2L)`.
      k: number of top eigenvalues of each eigen-metric.
      tol: relative residual tolerance of the eigensolves (``‖Hv − λv‖ ≤ tol·|λ|``).
      max_iters: HVP budget per eigensolve.
      precond: measure :math:`\\lambda_{\\max}(P^{-1}\\nabla^2L)` from ``opt_state`` (Adam, AdamW,
        RMSprop, anywhere in an optax chain).
      precond_kwargs: ``b1, b2, eps, eps_root, convention`` of
        :func:`~dynamics.curvature.adaptive_preconditioner`; they must match the optimizer unless
        it uses ``optax.inject_hyperparams``.
      trace_samples: Hutchinson probes for ``hessian_trace`` (0: off).
      ntk_apply: ``apply(params, x) -> (N, O)`` for the eNTK summaries (None: off).
      ntk_inputs: probe inputs (leading example axis) for the eNTK.
      ntk_targets: ``(N, O)`` targets of the probe inputs, for ``ntk_alignment``.
      ntk_every: eNTK cadence (default ``every``).
      measures: extra ``{name: fn(params, *batch)}`` returning a number or a dict of numbers,
        called at the curvature cadence.
      lr: learning rate, for the stability thresholds drawn by :meth:`plot` (2/η on
        ``sharpness``; (2 + 2β₁)/((1 − β₁)η) on ``precond_sharpness``).
      log_dir: directory for ``metrics.jsonl`` (and ``figures/``); None keeps rows in memory only.
      seed: seed of the random starts and trace probes.
    """

    def __init__(self, loss_fn: Callable, *, every: int = 10, sharpness: bool = True, k: int = 1,
                 tol: float = 1e-3, max_iters: int = 100, precond: bool = False,
                 precond_kwargs: dict | None = None, trace_samples: int = 0,
                 ntk_apply: Callable | None = None, ntk_inputs: PyTree | None = None,
                 ntk_targets=None, ntk_every: int | None = None,
                 measures: dict[str, Callable] | None = None, lr: float | None = None,
                 log_dir: str | Path | None = None, seed: int = 0):
        if ntk_apply is not None and ntk_inputs is None:
            raise ValueError("ntk_apply needs ntk_inputs (the probe set)")
        self.loss_fn = loss_fn
        self.every, self.k, self.tol, self.max_iters = int(every), int(k), float(tol), int(max_iters)
        self.sharpness, self.precond = bool(sharpness), bool(precond)
        self.precond_kwargs = dict(precond_kwargs or {})
        self.trace_samples = int(trace_samples)
        self.ntk_apply, self.ntk_inputs = ntk_apply, ntk_inputs
        self.ntk_targets = None if ntk_targets is None else np.asarray(ntk_targets, np.float64)
        self.ntk_every = self.every if ntk_every is None else int(ntk_every)
        self.measures = dict(measures or {})
        self.lr = lr
        self.seed = int(seed)
        self.warm: dict | None = None  # warm-start eigenvectors, per eigen-metric
        self.ntk = self.ntk0 = None
        self.rows: list[dict] = []
        self.log_dir = None if log_dir is None else Path(log_dir)
        self._file = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._file = open(self.log_dir / "metrics.jsonl", "w")

    # ------------------------------------------------------------------------------------ measuring
    def due(self, step: int) -> bool:
        """Whether ``step`` is a curvature measurement step."""
        return self.every > 0 and step % self.every == 0

    def __call__(self, step: int, params: PyTree, *batch, opt_state: PyTree = None,
                 **scalars) -> dict:
        """Measure at ``step`` if due, log the row, return it as a plain dict.

        Args:
          step: the training step (an int).
          params: the parameters to measure at (a pytree).
          *batch: the data ``loss_fn`` takes after ``params``.
          opt_state: the optax state (needed with ``precond=True``).
          **scalars: anything else to log on this row (``loss=...``); arrays become floats.
        """
        step = int(step)
        row = {"step": step, **{k: _python(v) for k, v in scalars.items()}}
        if self.due(step) and (self.sharpness or self.precond or self.trace_samples):
            row.update(self._curvature(step, params, batch, opt_state))
        if self.due(step):
            for name, fn in self.measures.items():
                value = fn(params, *batch)
                row.update({f"{name}_{k}": _python(v) for k, v in value.items()}
                           if isinstance(value, dict) else {name: _python(value)})
        if self.ntk_apply is not None and self.ntk_every > 0 and step % self.ntk_every == 0:
            row.update(self._ntk(params))
        self.rows.append(row)
        if self._file is not None:  # the run format: one object per line, flushed, nan -> null
            clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v
                     for k, v in row.items()}
            self._file.write(json.dumps(clean) + "\n")
            self._file.flush()
        return row

    def _curvature(self, step, params, batch, opt_state) -> dict:
        if self.precond and opt_state is None:
            raise ValueError("precond=True needs opt_state=... at each measurement")
        if self.warm is None:
            self.warm = self._initial_warm(params)
        precond_kw = tuple(sorted(self.precond_kwargs.items()))
        metrics, self.warm = _measure(
            self.loss_fn, params, tuple(batch), opt_state if self.precond else None, self.warm,
            self.seed, step, self.tol, k=self.k, max_iters=self.max_iters,
            trace_samples=self.trace_samples, sharpness=self.sharpness, precond=self.precond,
            precond_kw=precond_kw)
        return {name: _python(v) for name, v in jax.device_get(metrics).items()}

    def _initial_warm(self, params) -> dict:
        # Drawn on the host (numpy, seeded): a JAX draw here would compile one threefry program per
        # parameter shape, about as long as the whole measurement's compilation.
        rng = np.random.default_rng(self.seed)

        def draw(leaf):
            dtype = jnp.result_type(leaf)
            wide = np.float64 if dtype == np.float64 else np.float32  # no float64 copy of a big model
            return rng.standard_normal((self.k,) + np.shape(leaf), dtype=wide).astype(dtype)

        stack = jax.tree.map(draw, params)
        warm = {}
        if self.sharpness:
            warm["sharpness"] = stack
        if self.precond:
            warm["precond_sharpness"] = stack
        return warm

    def _ntk(self, params) -> dict:
        kernel = empirical_ntk(self.ntk_apply, params, self.ntk_inputs)
        K = np.asarray(kernel, np.float64)
        n, o = K.shape[0], K.shape[2]
        flat = K.transpose(0, 2, 1, 3).reshape(n * o, n * o)  # (N·O, N·O) Gram matrix
        self.ntk = kernel
        if self.ntk0 is None:
            self.ntk0 = kernel
        K0 = np.asarray(self.ntk0, np.float64).transpose(0, 2, 1, 3).reshape(n * o, n * o)
        out = {"ntk_trace": float(np.trace(flat) / (n * o)),
               "ntk_change": float(np.linalg.norm(flat - K0) / np.linalg.norm(K0))}
        if self.ntk_targets is not None:
            y = self.ntk_targets.reshape(n * o)
            yy = np.outer(y, y)
            out["ntk_alignment"] = float(np.sum(flat * yy) / (np.linalg.norm(flat)
                                                             * np.linalg.norm(yy)))
        return out

    # ------------------------------------------------------------------------------------- outputs
    def thresholds(self) -> dict:
        """``{metric: (label, value)}``: the stability thresholds for :meth:`plot` (needs ``lr``)."""
        if self.lr is None:
            return {}
        b1 = self.precond_kwargs.get("b1", 0.9)
        return {"sharpness": ("2/η", gd_threshold(self.lr)),
                "precond_sharpness": ("(2+2β₁)/((1−β₁)η)", adam_threshold(self.lr, b1))}

    def plot(self, figures_dir: str | Path | None = None, *, title: str = "") -> list[Path]:
        """Write the run's figures (``loss.png``, ``sharpness.png``, …) from the logged rows.

        ``figures_dir`` defaults to ``log_dir/figures``. Imports matplotlib (only here).
        """
        from dynamics.plots import plot_training

        if figures_dir is None:
            if self.log_dir is None:
                raise ValueError("plot() needs figures_dir when the tracker has no log_dir")
            figures_dir = self.log_dir / "figures"
        return plot_training(self.rows, figures_dir, title=title, thresholds=self.thresholds())

    def close(self) -> None:
        """Close metrics.jsonl (rows stay in ``self.rows``)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
