r"""Infinite-width NNGP and NTK of fully connected ReLU / Erf networks (neural-tangents ``stax``).

The network is ``[Dense(w_std, b_std), act] * depth + [Dense(w_std, b_std)]`` in NTK
parameterization: every weight and bias is drawn from :math:`\mathcal N(0, 1)` and a layer computes
:math:`h = \frac{\sigma_w}{\sqrt{n_{\mathrm{in}}}} W x + \sigma_b b`. :class:`NTKMLP` is that
network, for Monte-Carlo checks of the finite-width empirical NTK against these limits.

References:
  Jacot, Gabriel, Hongler, "Neural Tangent Kernel", NeurIPS 2018 (https://arxiv.org/abs/1806.07572).
  Novak et al., "Neural Tangents: Fast and Easy Infinite Neural Networks in Python", ICLR 2020
  (https://arxiv.org/abs/1912.02803).
"""

from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

_ACTIVATIONS = ("relu", "erf")


class InfiniteWidthKernels(NamedTuple):
    """NNGP and NTK of an infinitely wide network.

    Attributes:
      nngp: the output covariance :math:`\\mathbb E[f(x) f(x')]` at initialization,
        shape ``(N1, N2)``.
      ntk: the neural tangent kernel :math:`\\Theta(x, x')`, shape ``(N1, N2)``.
    """

    nngp: jax.Array
    ntk: jax.Array


def _dense(q11, q22, q12, ntk, w_var, b_var):
    q11, q22, q12 = w_var * q11 + b_var, w_var * q22 + b_var, w_var * q12 + b_var
    return q11, q22, q12, q12 + w_var * ntk


def _relu(q11, q22, q12, ntk):
    norms = jnp.sqrt(q11[:, None] * q22[None, :])
    cos = jnp.clip(q12 / norms, -1.0, 1.0)
    # arccos has slope -1/sqrt(1 - c) at c = 1: rounding of q12 on the diagonal (identical inputs)
    # would turn into a relative error ~sqrt(eps) in the NTK. Cosines within rounding of 1 are 1.
    cos = jnp.where(cos > 1 - 16 * jnp.finfo(cos.dtype).eps, 1.0, cos)
    theta = jnp.arccos(cos)
    q12 = norms * (jnp.sin(theta) + (jnp.pi - theta) * cos) / (2 * jnp.pi)
    ntk = ntk * (jnp.pi - theta) / (2 * jnp.pi)
    return q11 / 2, q22 / 2, q12, ntk


def _erf(q11, q22, q12, ntk):
    s11, s22 = 1 + 2 * q11, 1 + 2 * q22
    prod = s11[:, None] * s22[None, :]
    ntk = ntk * (4 / jnp.pi) / jnp.sqrt(prod - 4 * q12**2)
    q12 = (2 / jnp.pi) * jnp.arcsin(jnp.clip(2 * q12 / jnp.sqrt(prod), -1.0, 1.0))
    q11 = (2 / jnp.pi) * jnp.arcsin(2 * q11 / s11)
    q22 = (2 / jnp.pi) * jnp.arcsin(2 * q22 / s22)
    return q11, q22, q12, ntk


def infinite_width_kernels(x1: jax.Array, x2: jax.Array | None = None, *, depth: int,
                           activation: str = "relu", w_std: float = 1.0,
                           b_std: float | None = None) -> InfiniteWidthKernels:
    r"""Infinite-width NNGP and NTK of ``[Dense, act] * depth + [Dense]`` (NTK parameterization).

    The recursion of neural-tangents' ``stax`` in NTK parameterization. Inputs give
    :math:`q(x, x') = x \cdot x' / d_{\mathrm{in}}` and :math:`\Theta = 0`; each ``Dense`` maps
    :math:`q \leftarrow \sigma_w^2 q + \sigma_b^2` and
    :math:`\Theta \leftarrow q + \sigma_w^2 \Theta` (with the new :math:`q`); an activation maps
    :math:`q \leftarrow \mathbb E[\phi(u)\phi(v)]` and
    :math:`\Theta \leftarrow \Theta\,\mathbb E[\phi'(u)\phi'(v)]` for
    :math:`(u, v) \sim \mathcal N(0, [[q_{11}, q_{12}], [q_{12}, q_{22}]])`:

    - ReLU, with :math:`\vartheta = \arccos(q_{12}/\sqrt{q_{11} q_{22}})`:
      :math:`q_{12} \leftarrow
      \sqrt{q_{11} q_{22}}\,(\sin\vartheta + (\pi - \vartheta)\cos\vartheta)/(2\pi)`,
      :math:`q_{11} \leftarrow q_{11}/2`,
      :math:`\Theta \leftarrow \Theta\,(\pi - \vartheta)/(2\pi)`.
    - Erf: :math:`q_{12} \leftarrow
      \frac2\pi \arcsin\frac{2 q_{12}}{\sqrt{(1 + 2q_{11})(1 + 2q_{22})}}`,
      :math:`\Theta \leftarrow
      \Theta\,\frac{4/\pi}{\sqrt{(1 + 2q_{11})(1 + 2q_{22}) - 4 q_{12}^2}}`.

    Pure ``jnp``; ``depth`` and ``activation`` are static, the rest may be traced.

    Args:
      x1: inputs, shape ``(N1, ...)``; trailing axes are flattened to ``d_in``.
      x2: inputs, shape ``(N2, ...)``, or ``None`` for ``x1``.
      depth: number of hidden ``[Dense, act]`` layers (``0`` gives a linear model).
      activation: ``"relu"`` or ``"erf"`` (:math:`\mathrm{erf}(x)`, neural-tangents' ``Erf()``
        defaults).
      w_std: weight standard deviation :math:`\sigma_w`.
      b_std: bias standard deviation :math:`\sigma_b`; ``None`` means no bias.

    Returns:
      An :class:`InfiniteWidthKernels` ``(nngp, ntk)``, each of shape ``(N1, N2)``.
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation={activation!r} is unknown; valid: {', '.join(_ACTIVATIONS)}")
    if depth < 0:
        raise ValueError(f"depth must be >= 0; got {depth}")
    x1 = jnp.reshape(x1, (x1.shape[0], -1))
    x2 = x1 if x2 is None else jnp.reshape(x2, (x2.shape[0], -1))
    if x1.shape[1] != x2.shape[1]:
        raise ValueError(f"x1 and x2 have different input sizes: {x1.shape[1]} vs {x2.shape[1]}")
    d_in = x1.shape[1]
    hi = jax.lax.Precision.HIGHEST
    q11 = jnp.sum(x1 * x1, axis=1) / d_in
    q22 = jnp.sum(x2 * x2, axis=1) / d_in
    q12 = jnp.matmul(x1, x2.T, precision=hi) / d_in
    ntk = jnp.zeros_like(q12)
    w_var = jnp.asarray(w_std, q12.dtype) ** 2
    b_var = jnp.asarray(0.0 if b_std is None else b_std, q12.dtype) ** 2
    act = _relu if activation == "relu" else _erf
    for _ in range(depth):
        q11, q22, q12, ntk = act(*_dense(q11, q22, q12, ntk, w_var, b_var))
    q11, q22, q12, ntk = _dense(q11, q22, q12, ntk, w_var, b_var)
    return InfiniteWidthKernels(nngp=q12, ntk=ntk)


class NTKDense(nn.Module):
    r"""Dense layer in NTK parameterization.

    .. math::
      h = \frac{\sigma_w}{\sqrt{n_{\mathrm{in}}}} x W + \sigma_b b.

    ``W`` and ``b`` are drawn from :math:`\mathcal N(0, 1)`; ``b_std=None`` means no bias.
    """

    features: int
    w_std: float = 1.0
    b_std: float | None = None

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", nn.initializers.normal(1.0), (x.shape[-1], self.features),
                            x.dtype)
        y = jnp.matmul(x, kernel, precision=jax.lax.Precision.HIGHEST) * (
            self.w_std / jnp.sqrt(x.shape[-1]))
        if self.b_std is not None:
            bias = self.param("bias", nn.initializers.normal(1.0), (self.features,), x.dtype)
            y = y + self.b_std * bias
        return y


class NTKMLP(nn.Module):
    r"""``[NTKDense(w, w_std, b_std), act] * len(widths) + [NTKDense(out_dim, w_std, b_std)]``.

    At initialization its empirical NTK converges to :func:`infinite_width_kernels` (per logit,
    times the identity over logits) as the widths grow, with relative error :math:`O(1/\sqrt{w})`.

    Attributes:
      widths: hidden widths; ``len(widths)`` is the ``depth`` of :func:`infinite_width_kernels`.
      out_dim: number of outputs.
      activation: ``"relu"`` or ``"erf"``.
      w_std: weight standard deviation.
      b_std: bias standard deviation, or ``None`` for no biases.
    """

    widths: Sequence[int]
    out_dim: int = 1
    activation: str = "relu"
    w_std: float = 1.0
    b_std: float | None = None

    @nn.compact
    def __call__(self, x):
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation={self.activation!r} is unknown; valid: "
                             f"{', '.join(_ACTIVATIONS)}")
        act = jax.nn.relu if self.activation == "relu" else jax.scipy.special.erf
        x = jnp.reshape(x, (x.shape[0], -1))
        for width in self.widths:
            x = act(NTKDense(width, self.w_std, self.b_std)(x))
        return NTKDense(self.out_dim, self.w_std, self.b_std)(x)
