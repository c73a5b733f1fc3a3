"""Config schema of the central-flows task (``task: central_flow``): the node ``central.*``.

Generic keys keep their meaning: ``optimizer.lr`` is the real step size η, ``optimizer.b2``, ``eps`` and
``bias_correction`` are RMSProp's (``optimizer.name``: gd | rmsprop), ``train.steps`` is the number of
steps the processes run side by side (after ``central.warm_start`` discrete steps), ``train.loss`` the
loss, ``data.*`` and ``model.*`` the data set and the network. The keys here are the central-flow
driver's (``dynamics.flows.central_run.CentralFlowSettings``) and are checked by
:func:`validate_central` before anything is built.
"""

from dataclasses import dataclass, field

from dynamics.errors import check

OPTIMIZERS = ("gd", "rmsprop")
PROCESSES = ("discrete", "midpoint", "central", "stable")
EIG_METHODS = ("lanczos", "lobpcg", "power")


@dataclass
class CentralFlowConfig:
    """``central.*``: the processes run side by side from one initialisation (``run_central_flows``)."""

    warm_start: int = 300  # discrete steps before the processes fork (when warm_start_auto is false)
    # fork after GD's first catapult: the first step whose loss exceeds spike_factor x its running minimum
    # (the oscillation at the edge has grown), plus settle steps; max_warm_start if there is none
    warm_start_auto: bool = True
    max_warm_start: int = 1000
    spike_factor: float = 1.5
    settle: int = 30
    track_discrete: bool = False  # also track the discrete process's eigenvalues every step (figure)
    substeps: int = 4  # Euler substeps per step of the central flow
    processes: list[str] = field(default_factory=lambda: ["discrete", "central", "stable"])
    sdcp_threshold: float = 1.95  # effective eigenvalues at least this count as critical (the edge is 2)
    sdcp_candidate: float = 1.5  # tracked effective eigenvalues at least this enter every substep's SDCP
    track_fraction: float = 0.75  # track every effective eigenvalue above track_fraction * 2
    k_init: int = 1
    k_max: int = 4
    # lobpcg | lanczos | power; the block method, since the central flow locks several eigenvalues at
    # exactly 2, and single-vector Lanczos (one Krylov vector per eigenspace) then misses some of them
    eig_method: str = "lobpcg"
    eig_tol: float = 1e-6  # relative residual tolerance of the warm-started solves
    eig_max_iters: int = 1000
    stable_min_substeps: int = 4
    stable_max_seff: float = 100.0  # the stable flow freezes above this effective sharpness
    ablate_sigma: bool = False  # negative control: the "central" process runs with Sigma = 0


def validate_central(c: CentralFlowConfig, optimizer_name: str) -> None:
    """Check ``central.*`` (and that ``optimizer.name`` is one the central flows run)."""
    check(optimizer_name in OPTIMIZERS, "optimizer.name", optimizer_name, " | ".join(OPTIMIZERS))
    check(c.warm_start >= 0, "central.warm_start", c.warm_start, "an integer >= 0")
    check(c.max_warm_start >= 0, "central.max_warm_start", c.max_warm_start, "an integer >= 0")
    check(c.spike_factor > 1, "central.spike_factor", c.spike_factor, "a float > 1")
    check(c.settle >= 0, "central.settle", c.settle, "an integer >= 0")
    check(c.substeps >= 1, "central.substeps", c.substeps, "an integer >= 1")
    check(set(c.processes) <= set(PROCESSES) and {"discrete", "central"} <= set(c.processes),
          "central.processes", c.processes, "a subset of " + ", ".join(PROCESSES)
          + " holding discrete and central")
    check(0 < c.sdcp_threshold <= 2, "central.sdcp_threshold", c.sdcp_threshold, "a float in (0, 2]")
    check(0 < c.sdcp_candidate <= 2, "central.sdcp_candidate", c.sdcp_candidate, "a float in (0, 2]")
    check(0 < c.track_fraction < 1, "central.track_fraction", c.track_fraction, "a float in (0, 1)")
    check(1 <= c.k_init <= c.k_max, "central.k_init", c.k_init, f"an integer in [1, central.k_max={c.k_max}]")
    check(c.eig_method in EIG_METHODS, "central.eig_method", c.eig_method, " | ".join(EIG_METHODS))
    check(c.eig_tol > 0, "central.eig_tol", c.eig_tol, "a float > 0")
    check(c.eig_max_iters > 0, "central.eig_max_iters", c.eig_max_iters, "an integer > 0")
    check(c.stable_min_substeps >= 1, "central.stable_min_substeps", c.stable_min_substeps, "an integer >= 1")
    check(c.stable_max_seff > 2, "central.stable_max_seff", c.stable_max_seff, "a float > 2")
