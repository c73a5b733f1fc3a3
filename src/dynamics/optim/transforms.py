"""Optimizers that optax does not ship, written as optax transformations."""

import jax
import optax


def scale_by_inverse_global_norm(eps: float = 0.0) -> optax.GradientTransformation:
    r"""Divide the whole update by its global norm: :math:`g \mapsto g/(\|g\| + \epsilon)`."""

    def update(updates, state, params=None):
        del params
        norm = optax.global_norm(updates)
        return jax.tree.map(lambda g: g / (norm + eps), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def normalized_gd(learning_rate) -> optax.GradientTransformation:
    r"""Normalized GD (Arora, Li, Panigrahi 2022): :math:`\theta \leftarrow \theta - \eta\, g/\|g\|`.

    Equivalently GD with the step :math:`\eta_t = \eta/\|\nabla L(\theta_t)\|`, whose stability threshold
    is :math:`2/\eta_t`.
    """
    return optax.chain(scale_by_inverse_global_norm(), optax.sgd(learning_rate))


def gd(learning_rate, weight_decay=0.0) -> optax.GradientTransformation:
    r"""Gradient descent with optional L2 weight decay: :math:`\theta \leftarrow \theta - \eta(g + \lambda\theta)`.

    With ``weight_decay = 0`` this is :func:`optax.sgd`; the decay is the gradient of
    :math:`\tfrac{\lambda}{2}\|\theta\|^2` (coupled, as in Lyu, Li, Arora 2022).
    """
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(learning_rate))
