"""Models as pure ``init(key) -> params`` / ``apply(params, x) -> outputs`` pairs (Flax inside).

``build_model(name, input_shape, out_dim, **options)`` looks the name up in ``MODELS``.
"""

from dynamics.models import cnn, mlp, scale_invariant, target  # noqa: F401  (registers the models)
from dynamics.models.base import MODELS, Model, build_model, num_params

__all__ = ["MODELS", "Model", "build_model", "num_params"]
