"""dynamics: a JAX experiment framework for optimizer dynamics.

Numerical subpackages (``curvature``, ``models``, ``data``, ``optim``, ``losses``, ``train``) are plain
libraries usable from a notebook; ``run`` (Hydra) and ``tasks`` wire them into experiments.
"""

__version__ = "0.1.0"


def __getattr__(name):
    """Lazy top-level exports (``dynamics.Tracker``) without importing JAX at ``import dynamics``."""
    if name == "Tracker":
        from dynamics.tracker import Tracker

        return Tracker
    raise AttributeError(f"module 'dynamics' has no attribute {name!r}")
