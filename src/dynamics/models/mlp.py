"""Fully connected network: Dense → activation, repeated, then a linear read-out."""

from collections.abc import Sequence

from flax import linen as nn

from dynamics.models.base import ACTIVATIONS, KERNEL_INITS, MODELS, Model, bias_init, from_flax


class MLP(nn.Module):
    widths: Sequence[int]
    out_dim: int
    activation: str = "tanh"
    weight_init: str = "torch"
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        act = ACTIVATIONS.get(self.activation)
        h = x.reshape(x.shape[0], -1)
        for i, width in enumerate([*self.widths, self.out_dim]):
            h = nn.Dense(width, use_bias=self.use_bias, kernel_init=KERNEL_INITS.get(self.weight_init),
                         bias_init=bias_init(self.weight_init, h.shape[-1]), name=f"dense_{i}")(h)
            if i < len(self.widths):
                h = act(h)
        return h


@MODELS.register("mlp")
def mlp(input_shape, out_dim, *, widths=(64, 64), activation="tanh", init="torch",
        use_bias=True, **_) -> Model:
    """MLP ``prod(input_shape) → widths… → out_dim`` (inputs are flattened)."""
    ACTIVATIONS.get(activation), KERNEL_INITS.get(init)  # fail early on bad names
    module = MLP(tuple(widths), out_dim, activation, init, use_bias)
    return from_flax(module, input_shape)

