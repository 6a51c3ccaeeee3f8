"""A 'same' convolution with the batch norm before it folded into its kernel, exactly.

    conv_W(BN(h)) = conv_{W s}(h) + conv_V(1_image) + b,   V = sum_c W[..., c, :] t_c

where ``BN(h) = s h + t`` per channel (inference statistics).  Zero padding is applied after the
batch norm, so the constant ``t`` reaches an output pixel only through the taps that fall inside
the image: ``conv_V`` over an image of ones gives that border-exact term (constant in the interior).
Used at export (:func:`zoo.export.fold_batch_norms`): a standalone batch norm costs two
elementwise passes, and int8 converters quantize its per-channel multiply poorly.
"""

import keras
import numpy as np
from keras import ops

from zoo.layers.normalization import inference_affine


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

    @staticmethod
    def folds(conv):
        """Whether a batch norm before ``conv`` can be folded into it: a plain ``Conv2D``,
        stride 1, 'same', undilated, ungrouped, no activation."""
        return (type(conv) is keras.layers.Conv2D and conv.strides == (1, 1)
                and conv.padding == "same" and conv.dilation_rate == (1, 1)
                and conv.groups == 1 and conv.activation is keras.activations.linear)

    @classmethod
    def from_layers(cls, norm, conv, name=None):
        """The folded layer of ``conv(norm(h))``, weights set (``norm`` at inference)."""
        if not cls.folds(conv):
            raise ValueError(f"{conv.name}: only stride-1, 'same', ungrouped, linear convs fold")
        scale, shift = (ops.convert_to_numpy(v) for v in inference_affine(norm))
        kernel = ops.convert_to_numpy(conv.kernel)
        layer = cls(conv.filters, conv.kernel_size, use_bias=conv.use_bias, name=name or conv.name)
        layer.build((None, None, None, kernel.shape[2]))
        weights = [kernel * scale[:, None], np.einsum("hwco,c->hwo", kernel, shift)[:, :, None]]
        if conv.use_bias:
            weights.append(ops.convert_to_numpy(conv.bias))
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
        border = ops.conv(ops.ones_like(h[..., :1]), self.border_kernel, padding="same")
        if self.use_bias:
            border = border + self.bias  # the converter folds it into that conv: one add left
        return ops.conv(h, self.kernel, padding="same") + border

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "use_bias": self.use_bias}
