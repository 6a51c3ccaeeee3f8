"""VDSR (Kim et al., CVPR 2016), the baseline of MemNet's tables."""

import keras

from zoo.models._common import conv, image_input
from zoo.registry import register


@register("vdsr", paper="VDSR (Kim et al., CVPR 2016)", tasks=("sr", "denoise", "jpeg"),
          input="Y", upsampling="interpolated", paper_params="665K", convention="kernels")
def vdsr(channels=1, depth=20, filters=64, name="vdsr"):
    """``depth`` conv3x3 layers with ReLU between them, plus the input (global residual).

    Input: the bicubic-upsampled Y channel.  664,704 conv-kernel parameters
    (MemNet Table 2 "665K").
    """
    x = image_input(channels)
    h = x
    for i in range(1, depth):
        h = conv(filters, 3, f"conv{i}", activation="relu")(h)
    residual = conv(channels, 3, f"conv{depth}")(h)
    return keras.Model(x, keras.layers.Add(name="restored")([x, residual]), name=name)
