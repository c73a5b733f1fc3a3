r"""SDE approximations of SGD, RMSprop and Adam: Euler–Maruyama simulators, noise models, discrete
counterparts and noisy-quadratic closed forms.

Public API:

* noise models: ``Noise(dim, apply)``, ``diagonal_noise(variance, dim)``,
  ``minibatch_noise(example_loss, data, batch_size, *, unravel, chunk_size)`` (per-example
  gradients, never P×P);
* simulators (one path per key; ``sample_paths(simulate, key, num_paths)`` vmaps and jits):
  ``euler_maruyama``, ``sgd_sde``, ``rmsprop_sde``, ``adam_sde`` -> ``Path(t, y)``;
  ``adaptive_constants(lr, *, b2, eps, b1, sigma)`` maps optimizer hyperparameters to
  (σ0, ε0, c1, c2, dt = η²);
* discrete: ``run_optimizer(tx, oracle, theta0, ...)``, ``gaussian_oracle``, ``nqm_oracle``;
* closed forms: ``sgd_moments``, ``sgd_sde_moments``, ``sgd_stationary_variance``,
  ``sgd_sde_stationary_variance``, ``sgd_sde_stationary_loss``, ``rmsprop_sde_moments``,
  ``adaptive_stationary_variance``, ``adaptive_stationary_loss``.

Conventions: the SGD SDE is :math:`d\theta = -\nabla f\,dt + \sqrt\eta\,\Sigma_B^{1/2}dW` with
t = kη; the RMSprop/Adam SDEs are those of Malladi et al. (2022) with t = kη² (see each docstring).
All are Itô.
"""

from dynamics.sde.closed_form import (adaptive_stationary_loss, adaptive_stationary_variance,
                                      rmsprop_sde_moments, sgd_moments, sgd_sde_moments,
                                      sgd_sde_stationary_loss, sgd_sde_stationary_variance,
                                      sgd_stationary_variance)
from dynamics.sde.discrete import gaussian_oracle, nqm_oracle, run_optimizer
from dynamics.sde.noise import Noise, diagonal_noise, minibatch_noise
from dynamics.sde.simulate import (AdamSDEState, AdaptiveConstants, Path, RMSpropSDEState,
                                   adam_sde, adaptive_constants, euler_maruyama, rmsprop_sde,
                                   sample_paths, sgd_sde)

__all__ = [
    "AdamSDEState",
    "AdaptiveConstants",
    "Noise",
    "Path",
    "RMSpropSDEState",
    "adam_sde",
    "adaptive_constants",
    "adaptive_stationary_loss",
    "adaptive_stationary_variance",
    "diagonal_noise",
    "euler_maruyama",
    "gaussian_oracle",
    "minibatch_noise",
    "nqm_oracle",
    "rmsprop_sde",
    "rmsprop_sde_moments",
    "run_optimizer",
    "sample_paths",
    "sgd_moments",
    "sgd_sde",
    "sgd_sde_moments",
    "sgd_sde_stationary_loss",
    "sgd_sde_stationary_variance",
    "sgd_stationary_variance",
]
