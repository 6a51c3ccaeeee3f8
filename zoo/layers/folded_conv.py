"""A 'same' convolution with the batch norm before it folded into its kernel, exactly.

    conv_W(BN(h)) = conv_{W s}(h) + conv_V(1_image) + b,   V = sum_c W[..., c, :] t_c

where ``BN(h) = s h + t`` per channel (inference statistics).  Zero padding is applied after the
batch norm, so the constant ``t`` reaches an output pixel only through the taps that fall inside
the image: ``conv_V`` over an image of ones gives that border-exact term (constant in the interior).
Used at export (:func:`zoo.rewrite.fold_batch_norms`): a standalone batch norm costs two
elementwise passes, and int8 converters quantize its per-channel multiply poorly.
"""

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="zoo")
class FoldedNormConv(keras.layers.Layer):
    """``conv(BN(h))`` of a stride-1 'same' ``Conv2D`` as one kernel plus a border term.

    Build it with :meth:`from_layers`; its weights are the folded kernel, the border kernel
    ``V`` (``k x k x 1 x filters``) and the conv's bias.
    """

    def __init__(self, filters, kernel_size, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = tuple(int(k) for k in np.broadcast_to(kernel_size, (2,)))
        self.use_bias = bool(use_bias)

    @classmethod
    def from_layers(cls, norm, conv, name=None):
        """The folded layer of ``conv(norm(h))``, weights set (``norm`` at inference)."""
        if conv.strides != (1, 1) or conv.padding != "same" or conv.dilation_rate != (1, 1) \
                or getattr(conv, "groups", 1) != 1 or conv.activation is not keras.activations.linear:
            raise ValueError(f"{conv.name}: only stride-1, 'same', ungrouped, linear convs fold")
        gamma = norm.gamma.numpy() if norm.scale else 1.0
        beta = norm.beta.numpy() if norm.center else 0.0
        mean, variance = norm.moving_mean.numpy(), norm.moving_variance.numpy()
        scale = gamma / np.sqrt(variance + norm.epsilon)
        shift = beta - mean * scale
        kernel = conv.kernel.numpy()
        layer = cls(conv.filters, conv.kernel_size, use_bias=conv.use_bias, name=name or conv.name)
        layer.build((None, None, None, kernel.shape[2]))
        weights = [kernel * scale[:, None], np.einsum("hwco,c->hwo", kernel, shift)[:, :, None]]
        if conv.use_bias:
            weights.append(conv.bias.numpy())
        layer.set_weights([w.astype("float32") for w in weights])
        return layer

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(*self.kernel_size, input_shape[-1],
                                                            self.filters))
        self.border_kernel = self.add_weight(name="border_kernel",
                                             shape=(*self.kernel_size, 1, self.filters))
        self.bias = (self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")
                     if self.use_bias else None)

    def call(self, h):
        ones = ops.ones_like(h[..., :1])
        y = ops.conv(h, self.kernel, padding="same") + ops.conv(ones, self.border_kernel,
                                                                padding="same")
        return y + self.bias if self.use_bias else y

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "use_bias": self.use_bias}
