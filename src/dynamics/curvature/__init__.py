"""Curvature of a loss: Hessian-vector products and top eigenvalues (sharpness).

Public API: ``hvp(loss_fn, params, v)`` and
``top_eigenvalue(loss_fn, params, *, key, tol, max_iters, init)`` returning an ``EigResult``.
"""

from dynamics.curvature.hvp import flat_hvp, hvp
from dynamics.curvature.power import EigResult, power_iteration, top_eigenvalue

__all__ = ["EigResult", "flat_hvp", "hvp", "power_iteration", "top_eigenvalue"]
