"""Scale-invariant MLP: bias-free ReLU layers whose output logits are normalized (LayerNorm without
scale or bias) and multiplied by a fixed ``output_scale``.

ReLU is positively homogeneous and there are no biases, so multiplying any layer's weights by c > 0
scales the pre-normalization output by c, which the normalization removes: f(cθ) = f(θ) for all the
parameters together and for each layer alone. This is the setting of Lyu, Li, Arora (NeurIPS 2022),
where GD with weight decay drives η_eff·λ_max(∇²L(θ/‖θ‖)) to 2 and then reduces spherical sharpness.
"""

from collections.abc import Sequence

from flax import linen as nn

from dynamics.models.base import KERNEL_INITS, MODELS, Model, from_flax


class ScaleInvariantMLP(nn.Module):
    widths: Sequence[int]
    out_dim: int
    weight_init: str = "he"
    output_scale: float = 1.0

    @nn.compact
    def __call__(self, x):
        h = x.reshape(x.shape[0], -1)
        for i, width in enumerate(self.widths):
            h = nn.relu(nn.Dense(width, use_bias=False, kernel_init=KERNEL_INITS.get(self.weight_init),
                                 name=f"dense_{i}")(h))
        h = nn.Dense(self.out_dim, use_bias=False, kernel_init=KERNEL_INITS.get(self.weight_init),
                     name=f"dense_{len(self.widths)}")(h)
        return self.output_scale * nn.LayerNorm(epsilon=1e-12, use_bias=False, use_scale=False,
                                                 name="norm")(h)


@MODELS.register("scale_invariant_mlp")
def scale_invariant_mlp(input_shape, out_dim, *, widths=(64, 64), init="he", output_scale=1.0,
                        **_) -> Model:
    """Scale-invariant MLP ``prod(input_shape) → widths… → out_dim → LayerNorm × output_scale``."""
    KERNEL_INITS.get(init)
    return from_flax(ScaleInvariantMLP(tuple(widths), out_dim, init, output_scale), input_shape)
