"""Exact export-time rewrites that keep a graph inside LiteRT's GPU-delegate op set.

Pixel shuffle (sub-pixel upsampling, Shi et al., CVPR 2016) exports as DEPTH_TO_SPACE, which the
GPU delegate's documented op table lacks.  It is a transposed convolution with stride ``r`` and an
``r x r`` one-hot kernel (TRANSPOSE_CONV is in the table):

    out[r i + a, r j + b, c] = x[i, j, (a r + b) C + c]
                             = sum_k x[i, j, k] K[a, b, c, k],   K[a, b, c, k] = [k = (a r + b) C + c]

Each output sums one product with 1 and zeros, so it is exact in float32 and float16.
"""

import keras
import numpy as np
from keras import ops

from zoo.layers import PixelShuffle

__all__ = ["TransposedConvShuffle", "shuffle_kernel", "gpu_rewrite"]


def shuffle_kernel(factor, channels):
    """The ``(r, r, C, C r^2)`` one-hot kernel of depth-to-space as a transposed conv."""
    r = int(factor)
    kernel = np.zeros((r, r, channels, channels * r * r), "float32")
    for a in range(r):
        for b in range(r):
            for c in range(channels):
                kernel[a, b, c, (a * r + b) * channels + c] = 1.0
    return kernel


@keras.saving.register_keras_serializable(package="zoo")
class TransposedConvShuffle(keras.layers.Layer):
    """:class:`zoo.layers.PixelShuffle` computed as a transposed conv (same output)."""

    def __init__(self, factor=2, **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)

    def build(self, input_shape):
        r = self.factor
        if input_shape[-1] % (r * r):
            raise ValueError(f"{input_shape[-1]} channels do not shuffle by {r}")
        self.kernel = ops.convert_to_tensor(shuffle_kernel(r, input_shape[-1] // (r * r)))

    def call(self, x):
        return ops.conv_transpose(x, self.kernel, strides=self.factor, padding="valid")

    def compute_output_shape(self, input_shape):
        return PixelShuffle(self.factor).compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def gpu_rewrite(model):
    """A copy of a functional ``model`` with each PixelShuffle as a transposed conv, or
    ``model`` itself if it has none (same weights, same outputs)."""
    if not any(isinstance(layer, PixelShuffle) for layer in model.layers):
        return model

    def clone(layer):
        if isinstance(layer, PixelShuffle):
            return TransposedConvShuffle(layer.factor, name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy
