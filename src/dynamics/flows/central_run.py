r"""Run the discrete optimizer, its midpoint process, the central flow and the stable flow side by side.

All processes start from one initialisation on the same data (the reference's ``main.py``):

* ``discrete``: the optax optimizer (GD, RMSProp, scalar RMSProp; ``central_optim``);
* ``midpoint``: the second-order midpoints :math:`w^*_t = \frac14(w_{t-1} + 2w_t + w_{t+1})` of the
  discrete iterates (defined for ``1 <= t < steps``), which average out a period-2 oscillation;
* ``central``: the central flow, ``substeps`` Euler substeps per step, its tracked eigenpairs re-solved
  (warm-started, growing) at every step and refreshed by Rayleigh–Ritz at every substep;
* ``stable``: the stable flow (gradient flow for GD) with :math:`\max(m, \lceil 2S_{\rm eff}\rceil)` substeps,
  frozen once :math:`S_{\rm eff}` exceeds ``stable_max_seff`` (the reference's cut-off).

The flows' optimizer state takes one update with :math:`\nabla L(w_0)` at the start, so that at step ``t``
every process uses the preconditioner of the discrete update ``t``. ``warm_start`` discrete steps are
run before the processes fork (the reference's ``--warm-start``; RMSProp starts above the edge).

The driver is a Python loop over steps calling jitted step functions (params, optimizer state and data
are jit arguments); tracked counts and the number of critical eigenvalues are static per compilation
(one compilation per value seen, a handful per run).
"""

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from dynamics.curvature.tracking import EigenTracker
from dynamics.flows import central as cf
from dynamics.flows.central_optim import (FlowOptimizer, discrete_flow_state, discrete_transform,
                                          init_flow_state)

PROCESSES = ("discrete", "midpoint", "central", "stable")


@dataclasses.dataclass(frozen=True)
class CentralFlowSettings:
    """Options of :func:`run_central_flows` (the reference's defaults where it has one).

    Attributes:
      processes: subset of ``("discrete", "midpoint", "central", "stable")``.
      substeps: Euler substeps per step of the central flow.
      sdcp_threshold: effective eigenvalues at least this at a step's start count as critical
        (``n_critical``; the reference's SDCP threshold).
      sdcp_candidate: tracked effective eigenvalues at least this at a step's start enter the SDCP of
        every substep of the step. Those below the edge get no variance unless the linearised margin says
        they reach 2 within the substep, so an eigenvalue that crosses 2 *during* a step is held there
        (with the candidate set equal to the critical set, as in the reference, it overshoots until the
        next step: 2.002–2.027 measured at η = 0.9). 1.5: the tracking threshold.
      track_fraction: track every effective eigenvalue above ``track_fraction * 2`` (0.75: 1.5).
      k_init, k_max: tracked eigenpairs at the start, and at most.
      eig_method, eig_tol, eig_max_iters: the warm-started solver (``eigsh_top_k``; relative tolerance).
        ``"lobpcg"`` (needs ``5 k_max < n``): the central flow holds several eigenvalues at exactly 2,
        and ``"lanczos"`` (one start vector, so one Krylov direction per eigenspace) then returns a
        block that misses some of them; the flow let the missed one overshoot to 2.007–2.016
        (GD, η = 0.9, three eigenvalues at the edge).
      eig_processes: processes besides ``central`` whose effective eigenvalues are tracked every step
        (``stable`` always tracks its top one for its substeps).
      stable_min_substeps, stable_max_seff: the stable flow's adaptive substeps and freeze point.
      warm_start: discrete steps before the processes fork.
      ablate_sigma: run the "central" process with Σ ≡ 0 (the paper's ablation: the stable flow with
        the central flow's tracker, ``max(substeps, ⌈2 S_eff⌉)`` substeps); a negative control.
    """

    processes: tuple = PROCESSES
    substeps: int = 4
    sdcp_threshold: float = 1.95
    sdcp_candidate: float = 1.5
    track_fraction: float = 0.75
    k_init: int = 1
    k_max: int = 6
    eig_method: str = "lobpcg"
    eig_tol: float = 1e-7
    eig_max_iters: int = 1000
    eig_processes: tuple = ("midpoint", "stable")
    stable_min_substeps: int = 4
    stable_max_seff: float = 100.0
    warm_start: int = 0
    ablate_sigma: bool = False


class CentralFlowsResult(NamedTuple):
    """``metrics``: name → ``(steps, ...)`` numpy array (NaN where undefined), e.g. ``loss/central``,
    ``eigs/central`` (effective eigenvalues, NaN-padded to ``k_max``), ``sharpness/<p>`` (the top one;
    raw λ_max for GD), ``predicted_loss``, ``x_eigs``, ``sigma_eigs``, ``sigma_trace``, ``deltas``,
    ``n_critical``, ``distance/<a>-<b>``, ``distance/<p>-init``, ``hvps/<p>``, ``third/central``,
    ``grads/<p>``, ``stable_substeps``. ``final``: process → final flat params. ``unravel``: flat → pytree.
    """

    metrics: dict
    final: dict
    unravel: object


class _Fns:
    """The jitted step functions of one run (closed over the loss and the optimizer kind only)."""

    def __init__(self, floss, substeps):
        self.floss = floss
        self.discrete = jax.jit(lambda opt, w, st, data: cf.discrete_step(floss, opt, w, st, data))
        self.central = jax.jit(lambda opt, *a, k_c: cf.central_step(floss, opt, *a, k_c=k_c,
                                                                     substeps=substeps),
                               static_argnames="k_c")
        self.stable = jax.jit(lambda opt, w, st, data, n: cf.stable_step(floss, opt, w, st, data, n))
        self.loss_grad = jax.jit(jax.value_and_grad(floss))
        self.opt_init = jax.jit(lambda opt, w: discrete_transform(opt).init(w))
        self.matvec = {}  # (kind, hyperparameters) -> effective matvec (shared tracker compiles)

    def effective_matvec(self, opt):
        # keyed by the optimizer's values too: the matvec closes over η (and β2, ε), so a cache by
        # kind alone handed a later run with another η the first run's preconditioner
        key = (opt.kind, *(float(x) for x in jax.tree.leaves(opt)))
        if key not in self.matvec:
            self.matvec[key] = cf.effective_matvec(self.floss, opt)
        return self.matvec[key]


@functools.lru_cache(maxsize=8)
def _setup(loss_fn, treedef, shapes, substeps):
    """The unravel map and the jitted steps, cached so that repeated runs with one loss function and
    parameter layout reuse their compilations."""
    unravel = ravel_pytree(jax.tree.unflatten(treedef, [jnp.zeros(s, d) for s, d in shapes]))[1]
    return unravel, _Fns(lambda w, d: loss_fn(unravel(w), d), substeps)


def _trackers(mv, s: CentralFlowSettings):
    kw = dict(threshold=2.0, fraction=s.track_fraction, method=s.eig_method, tol=s.eig_tol,
              max_iters=s.eig_max_iters)
    grow = dict(k_init=s.k_init, k_max=s.k_max, **kw)
    return {"central": EigenTracker(mv, **grow), "discrete": EigenTracker(mv, **grow),
            "midpoint": EigenTracker(mv, **grow), "stable": EigenTracker(mv, k_max=1, grow=False, **kw)}


def _alloc(names, steps, k_max):
    return {n: np.full((steps, k_max) if n.split("/")[0] in ("eigs", "x_eigs", "sigma_eigs", "deltas")
                       else (steps,), np.nan) for n in names}


def run_central_flows(loss_fn, params, data, opt: FlowOptimizer, steps: int,
                      settings: CentralFlowSettings = CentralFlowSettings(), *,
                      key: jax.Array) -> CentralFlowsResult:
    """Run the processes of ``settings.processes`` for ``steps`` steps from ``params``.

    Args:
      loss_fn: ``loss_fn(params, data) -> scalar`` (full batch), differentiable to third order.
      params: initial parameters (pytree).
      data: a pytree of arrays passed to every jitted step as an argument.
      opt: ``central_optim.gd(lr)``, ``rmsprop(...)`` or ``scalar_rmsprop(...)``.
      steps: number of steps logged (after ``settings.warm_start`` discrete steps).
      settings: :class:`CentralFlowSettings`.
      key: PRNG key for the trackers' new directions.

    Returns:
      :class:`CentralFlowsResult`; row ``t`` of each metric is measured at step ``t`` before its update.
    """
    s = settings
    unknown = set(s.processes) - set(PROCESSES)
    if unknown:
        raise ValueError(f"unknown processes {sorted(unknown)}; valid: {', '.join(PROCESSES)}.")
    w0 = ravel_pytree(params)[0]
    leaves, treedef = jax.tree.flatten(params)
    shapes = tuple((tuple(x.shape), jnp.result_type(x)) for x in leaves)
    unravel, fns = _setup(loss_fn, treedef, shapes, s.substeps)
    trk = _trackers(fns.effective_matvec(opt), s)
    opt_state = fns.opt_init(opt, w0)
    for t in range(s.warm_start):
        w0, opt_state, _ = fns.discrete(opt, w0, opt_state, data)
    _, g0 = fns.loss_grad(w0, data)
    nu0 = None if opt.kind == "gd" else opt_state[0].nu
    fstate = init_flow_state(opt, g0, nu0, s.warm_start)
    run = _Run(s, fns, trk, opt, data, steps, w0, opt_state, fstate, key)
    for t in range(steps):
        run.step(t)
    return CentralFlowsResult(run.m, run.final(), unravel)


class _Run:
    """Mutable driver state of one :func:`run_central_flows` call (host side)."""

    def __init__(self, s, fns, trk, opt, data, steps, w0, opt_state, fstate, key):
        self.s, self.fns, self.trk, self.opt, self.data, self.key = s, fns, trk, opt, data, key
        self.w0, self.opt_state, self.warm = w0, opt_state, s.warm_start
        procs = [p for p in PROCESSES if p in s.processes]
        self.w = {p: w0 for p in procs if p != "midpoint"}
        self.fs = {"central": fstate, "stable": fstate}
        self.V = {p: None for p in PROCESSES}
        self.prev = None  # discrete w_{t-1}
        self.frozen = False
        names = [f"{k}/{p}" for p in procs for k in ("loss", "eigs", "sharpness", "hvps", "grads")]
        names += [f"distance/{a}-{b}" for i, a in enumerate(procs) for b in procs[i + 1:]]
        names += [f"distance/{p}-init" for p in procs]
        names += ["predicted_loss", "x_eigs", "sigma_eigs", "sigma_trace", "deltas", "n_critical",
                  "third/central", "sdcp_residual", "stable_substeps", "grad_norm/central"]
        self.m = _alloc(names, steps, s.k_max)

    def _key(self):
        self.key, sub = jax.random.split(self.key)
        return sub

    def _eigs(self, proc, t, w, fstate):
        res = self.trk[proc]((w, self.data, fstate), self.V[proc], key=self._key(),
                             n=w.shape[0], dtype=w.dtype)
        self.V[proc] = res.vectors
        vals = np.asarray(res.values)
        self.m[f"eigs/{proc}"][t, :len(vals)] = vals
        self.m[f"sharpness/{proc}"][t] = vals[0] / (self.opt.lr if self.opt.kind == "gd" else 1.0)
        self.m[f"hvps/{proc}"][t] = res.num_matvecs
        return res

    def step(self, t):
        pos = dict(self.w)  # every process at step t, before its update
        if "discrete" in self.w:
            self._discrete(t)
            if "midpoint" in self.s.processes and t >= 1:
                pos["midpoint"] = self.mid
        if "central" in self.w:
            self._central(t)
        if "stable" in self.w:
            self._stable(t)
        self._distances(t, pos)

    def _discrete(self, t):
        w = self.w["discrete"]
        w_next, self.opt_state, loss = self.fns.discrete(self.opt, w, self.opt_state, self.data)
        self.m["loss/discrete"][t], self.m["grads/discrete"][t] = float(loss), 1
        fstate = discrete_flow_state(self.opt, self.opt_state, t + self.warm)
        if "discrete" in self.s.eig_processes:
            self._eigs("discrete", t, w, fstate)
        if "midpoint" in self.s.processes and self.prev is not None:
            mid = 0.25 * (self.prev + 2 * w + w_next)
            self.mid = mid
            self.m["loss/midpoint"][t] = float(self.fns.loss_grad(mid, self.data)[0])
            if "midpoint" in self.s.eig_processes:
                self._eigs("midpoint", t, mid, fstate)
        self.prev, self.w["discrete"] = w, w_next

    def _central(self, t):
        w, fstate, m = self.w["central"], self.fs["central"], self.m
        res = self._eigs("central", t, w, fstate)
        vals = np.asarray(res.values)
        k_c = int(np.sum(vals >= min(self.s.sdcp_candidate, self.s.sdcp_threshold)))
        m["n_critical"][t] = int(np.sum(vals >= self.s.sdcp_threshold))
        m["grads/central"][t] = self.s.substeps
        if k_c == 0 or self.s.ablate_sigma:
            m["loss/central"][t] = m["predicted_loss"][t] = float(self.fns.loss_grad(w, self.data)[0])
            m["sigma_trace"][t] = m["third/central"][t] = 0.0
            n_sub = max(self.s.substeps, math.ceil(2 * float(vals[0]))) if self.s.ablate_sigma \
                else self.s.substeps
            self.w["central"], self.fs["central"] = self.fns.stable(self.opt, w, fstate, self.data, n_sub)
            return
        w_ref = self.prev if self.prev is not None and "discrete" in self.w else w
        w_new, fs_new, V, info = self.fns.central(self.opt, w, fstate, res.vectors, res.values,
                                                  self.data, w_ref, k_c=k_c)
        self.w["central"], self.fs["central"], self.V["central"] = w_new, fs_new, V
        info = jax.device_get(info)
        m["loss/central"][t], m["predicted_loss"][t] = info["loss"], info["predicted_loss"]
        m["x_eigs"][t, :k_c], m["sigma_eigs"][t, :k_c] = info["x_eigs"], info["sigma_eigs"]
        m["deltas"][t, :k_c], m["sigma_trace"][t] = info["deltas"], np.sum(info["sigma_eigs"])
        m["sdcp_residual"][t], m["grad_norm/central"][t] = info["sdcp_residual"], info["grad_norm"]
        k = len(vals)
        m["hvps/central"][t] += 3 * k * (self.s.substeps - 1)  # Krylov Rayleigh–Ritz refreshes
        m["third/central"][t] = self.s.substeps * k_c * (k_c + 1) // 2

    def _stable(self, t):
        w, fstate, m = self.w["stable"], self.fs["stable"], self.m
        m["loss/stable"][t] = float(self.fns.loss_grad(w, self.data)[0])
        if self.frozen:
            return
        res = self._eigs("stable", t, w, fstate)
        s_eff = float(res.values[0])
        if s_eff > self.s.stable_max_seff:
            self.frozen = True
            return
        n_sub = max(self.s.stable_min_substeps, math.ceil(2 * s_eff))
        m["stable_substeps"][t], m["grads/stable"][t] = n_sub, n_sub
        self.w["stable"], self.fs["stable"] = self.fns.stable(self.opt, w, fstate, self.data, n_sub)

    def _distances(self, t, pos):
        procs = [p for p in PROCESSES if p in self.s.processes]
        for i, a in enumerate(procs):
            if a in pos:
                self.m[f"distance/{a}-init"][t] = float(jnp.linalg.norm(pos[a] - self.w0))
            for b in procs[i + 1:]:
                if a in pos and b in pos:
                    self.m[f"distance/{a}-{b}"][t] = float(jnp.linalg.norm(pos[a] - pos[b]))

    def final(self):
        return dict(self.w)
