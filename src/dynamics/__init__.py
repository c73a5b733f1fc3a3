"""dynamics: a JAX experiment framework for optimizer dynamics.

Numerical subpackages (``curvature``, ``models``, ``data``, ``optim``, ``losses``, ``train``) are plain
libraries usable from a notebook; ``run`` (Hydra) and ``tasks`` wire them into experiments.
"""

__version__ = "0.1.0"
