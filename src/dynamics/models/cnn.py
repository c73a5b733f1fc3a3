"""Small convolutional network: [conv 3 → activation → average-pool 2] × len(channels) → Dense.

Works on 1-D signals ``(N, L, C)`` (mnist1d) and images ``(N, H, W, C)`` (CIFAR-10): the kernel and
pooling windows have as many axes as the input has spatial axes.
"""

from collections.abc import Sequence

from flax import linen as nn

from dynamics.models.base import ACTIVATIONS, KERNEL_INITS, MODELS, Model, bias_init, from_flax


class CNN(nn.Module):
    channels: Sequence[int]
    out_dim: int
    activation: str = "relu"
    weight_init: str = "torch"
    kernel_size: int = 3

    @nn.compact
    def __call__(self, x):
        act = ACTIVATIONS.get(self.activation)
        if x.ndim == 2:  # flat signal: one channel
            x = x[..., None]
        spatial = x.ndim - 2
        h = x
        for i, ch in enumerate(self.channels):
            fan_in = h.shape[-1] * self.kernel_size**spatial
            h = nn.Conv(ch, (self.kernel_size,) * spatial, kernel_init=KERNEL_INITS.get(self.weight_init),
                        bias_init=bias_init(self.weight_init, fan_in), name=f"conv_{i}")(h)
            h = act(h)
            h = nn.avg_pool(h, (2,) * spatial, strides=(2,) * spatial)
        h = h.reshape(h.shape[0], -1)
        return nn.Dense(self.out_dim, kernel_init=KERNEL_INITS.get(self.weight_init),
                        bias_init=bias_init(self.weight_init, h.shape[-1]), name="readout")(h)


@MODELS.register("cnn")
def cnn(input_shape, out_dim, *, channels=(32, 32), activation="relu", init="torch",
        kernel_size=3, **_) -> Model:
    """CNN with ``len(channels)`` conv/pool stages and a linear read-out."""
    ACTIVATIONS.get(activation), KERNEL_INITS.get(init)
    return from_flax(CNN(tuple(channels), out_dim, activation, init, kernel_size), input_shape)
