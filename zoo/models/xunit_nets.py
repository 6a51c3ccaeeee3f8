"""The xUnit paper's networks and their ReLU baselines (Kligvasser et al., CVPR 2018).

Every builder returns a functional ``keras.Model`` from degraded to restored
image, values in [0, 1].  Denoisers learn the residual (the noise) as their
papers do and output ``x - noise``.  Parameter counts are pinned under the
xUnit paper's convention (conv kernels + BN gamma/beta, see ``zoo.params``).
"""

import keras

from zoo.layers import PixelShuffle, XUnit, batch_norm
from zoo.models._common import conv, image_input
from zoo.registry import register

XUNIT = "xUnit (Kligvasser et al., CVPR 2018)"
DNCNN = "DnCNN (Zhang et al., TIP 2017)"
SRCNN = "SRCNN (Dong et al., TPAMI 2016)"
SRRESNET = "SRResNet (Ledig et al., CVPR 2017)"


def _conv_bn_relu(h, filters, name):
    """conv3x3 (no bias: BN follows), BN, ReLU — the ReLU baselines' layer."""
    h = conv(filters, 3, f"{name}_conv", use_bias=False)(h)
    h = batch_norm(name=f"{name}_bn")(h)
    return keras.layers.ReLU(name=f"{name}_relu")(h)


def _residual_output(x, noise):
    """Residual learning: the net predicts the noise, the output is x - noise."""
    return keras.layers.Subtract(name="restored")([x, noise])


@register("xdncnn_rgb", paper=XUNIT, tasks=("derain", "denoise", "denoise_rgb"), input="RGB",
          paper_params="306K", channels=3)
@register("xdncnn", paper=XUNIT, tasks=("denoise",), input="gray", paper_params="303K")
def xdncnn(channels=1, filters=64, blocks=7, kernel_size=9, name="xdncnn"):
    """xDnCNN (xUnit paper §4.1): DnCNN with xUnits and 9 conv layers instead of 17.

    conv3x3 + xUnit; ``blocks`` x [BN, conv3x3 + xUnit]; conv3x3 to ``channels``;
    output = input - predicted noise.  Gray: 303,616 parameters (paper "303K");
    RGB (de-raining, §4.2): 305,920 ("306K").
    """
    x = image_input(channels)
    h = conv(filters, 3, "conv_in")(x)
    h = XUnit(kernel_size, name="xunit_in")(h)
    for i in range(1, blocks + 1):
        h = batch_norm(name=f"block{i}_bn")(h)
        h = conv(filters, 3, f"block{i}_conv")(h)
        h = XUnit(kernel_size, name=f"block{i}_xunit")(h)
    noise = conv(channels, 3, "conv_out")(h)
    return keras.Model(x, _residual_output(x, noise), name=name)


@register("dncnn_3", paper=DNCNN, tasks=("denoise", "sr", "jpeg"), input="Y",
          upsampling="interpolated", paper_params="20 layers (SPEC §5)", depth=20)
@register("dncnn_b", paper=DNCNN, tasks=("denoise",), input="gray",
          paper_params="20 layers (SPEC §5)", depth=20)
@register("dncnn_rgb", paper=DNCNN, tasks=("derain", "denoise", "denoise_rgb"), input="RGB",
          paper_params="558K", channels=3)
@register("dncnn_s", paper=DNCNN, tasks=("denoise",), input="gray", paper_params="555K")
def dncnn(channels=1, filters=64, depth=17, name="dncnn_s"):
    """DnCNN (Zhang et al., TIP 2017): ``depth`` conv layers, residual learning.

    conv3x3 + ReLU; (depth - 2) x [conv3x3, BN, ReLU]; conv3x3 to ``channels``.
    - ``dncnn_s`` (one sigma, the xUnit paper's baseline), 17 layers: 556,032 parameters (the
      paper prints "555K", which no single counting rule gives); RGB: 558,336 ("558K").
    - ``dncnn_b`` (blind gray denoising) and ``dncnn_3`` (one model for denoising, SR x2-x4 on
      the bicubic-upsampled Y and JPEG deblocking), 20 layers: 667,008 (664,704 kernels).
    """
    x = image_input(channels)
    h = conv(filters, 3, "conv_in", activation="relu")(x)
    for i in range(1, depth - 1):
        h = _conv_bn_relu(h, filters, f"block{i}")
    noise = conv(channels, 3, "conv_out")(h)
    return keras.Model(x, _residual_output(x, noise), name=name)


@register("convnet", paper=XUNIT, tasks=("denoise",), input="gray", paper_params="Fig. 3")
def convnet(layers=4, channels=1, filters=64, name="convnet"):
    """ConvNet-L of the xUnit paper's Fig. 3: L x [conv3x3, BN, ReLU], residual learning.

    A final conv3x3 maps to ``channels``; output = input - predicted noise.
    """
    x = image_input(channels)
    h = x
    for i in range(1, layers + 1):
        h = _conv_bn_relu(h, filters, f"layer{i}")
    noise = conv(channels, 3, "conv_out")(h)
    return keras.Model(x, _residual_output(x, noise), name=name)


@register("xnet", paper=XUNIT, tasks=("denoise",), input="gray", paper_params="Fig. 3")
def xnet(layers=4, kernel_size=9, channels=1, filters=64, name="xnet"):
    """xNet-L of the xUnit paper's Fig. 3: L x [conv3x3 + xUnit(k x k)], residual learning.

    ``kernel_size`` is the xUnit's depthwise support (1 to 9 in Figs. 3-4).
    """
    x = image_input(channels)
    h = x
    for i in range(1, layers + 1):
        h = conv(filters, 3, f"layer{i}_conv")(h)
        h = XUnit(kernel_size, name=f"layer{i}_xunit")(h)
    noise = conv(channels, 3, "conv_out")(h)
    return keras.Model(x, _residual_output(x, noise), name=name)


@register("xsrcnn_c", paper=XUNIT, tasks=("sr",), input="Y", upsampling="interpolated",
          paper_params="44K", activation="xunit", filters=(42, 32))
@register("xsrcnn_f", paper=XUNIT, tasks=("sr",), input="Y", upsampling="interpolated",
          paper_params="32K", activation="xunit", kernel_sizes=(9, 3, 5))
@register("srcnn", paper=SRCNN, tasks=("sr",), input="Y", upsampling="interpolated",
          paper_params="57K")
def srcnn(channels=1, filters=(64, 32), kernel_sizes=(9, 5, 5), activation="relu",
          xunit_kernel=9, name="srcnn"):
    """SRCNN 9-5-5 and the xUnit paper's xSRCNN variants (§4.3).

    Input: the bicubic-upsampled Y channel; 'same' padding keeps the size.
    - ``srcnn``: conv9x9 64 + ReLU, conv5x5 32 + ReLU, conv5x5 1: 57,184 parameters.
    - ``xsrcnn_f``: xUnits, middle conv 3x3 (fewer taps): 32,576 ("32K").
    - ``xsrcnn_c``: xUnits, 42 channels in layer 1 (fewer channels): 44,092 ("44K").
    """
    if activation not in ("relu", "xunit"):
        raise ValueError(f"activation must be 'relu' or 'xunit', got {activation!r}")
    x = image_input(channels)
    h = x
    for i, (width, size) in enumerate(zip(filters, kernel_sizes), start=1):
        h = conv(width, size, f"conv{i}")(h)
        if activation == "xunit":
            h = XUnit(xunit_kernel, name=f"xunit{i}")(h)
        else:
            h = keras.layers.ReLU(name=f"relu{i}")(h)
    out = conv(channels, kernel_sizes[-1], "restored")(h)
    return keras.Model(x, out, name=name)


@register("xsrresnet", paper=XUNIT, tasks=("sr",), input="RGB", upsampling="sub-pixel",
          scale=4, paper_params="1.155M", blocks=10, activation="xunit")
@register("srresnet", paper=SRRESNET, tasks=("sr",), input="RGB", upsampling="sub-pixel",
          scale=4, paper_params="1.546M")
def srresnet(scale=4, channels=3, blocks=16, filters=64, activation="prelu",
             xunit_kernel=9, name="srresnet"):
    """SRResNet (Ledig et al.) and xSRResNet (xUnit paper §4.3); low-res input, x``scale`` output.

    conv9x9 + PReLU; ``blocks`` residual blocks; conv3x3, BN, + long skip;
    sub-pixel upsampling [conv3x3 to 4*64, pixel shuffle x2, PReLU] per factor 2
    (one x3 stage for scale 3); conv9x9 to ``channels``.
    - SRResNet blocks: [conv, BN, PReLU, conv, BN, + skip], 16 of them: 1,546,752.
    - xSRResNet blocks: [conv + xUnit, conv, BN, + skip], 10 of them: 1,155,968.
    """
    if activation not in ("prelu", "xunit"):
        raise ValueError(f"activation must be 'prelu' or 'xunit', got {activation!r}")
    stages = {2: [2], 3: [3], 4: [2, 2], 8: [2, 2, 2]}.get(scale)
    if stages is None:
        raise ValueError(f"scale must be one of 2, 3, 4, 8, got {scale!r}")
    x = image_input(channels, name="low_res")
    h = conv(filters, 9, "conv_in")(x)
    h = skip = keras.layers.PReLU(shared_axes=[1, 2], name="prelu_in")(h)
    for i in range(1, blocks + 1):
        y = conv(filters, 3, f"block{i}_conv1", use_bias=activation == "xunit")(h)
        if activation == "xunit":
            y = XUnit(xunit_kernel, name=f"block{i}_xunit")(y)
        else:
            y = batch_norm(name=f"block{i}_bn1")(y)
            y = keras.layers.PReLU(shared_axes=[1, 2], name=f"block{i}_prelu")(y)
        y = conv(filters, 3, f"block{i}_conv2", use_bias=False)(y)
        y = batch_norm(name=f"block{i}_bn2")(y)
        h = keras.layers.Add(name=f"block{i}_add")([h, y])
    h = conv(filters, 3, "conv_mid", use_bias=False)(h)
    h = batch_norm(name="bn_mid")(h)
    h = keras.layers.Add(name="long_skip")([skip, h])
    for i, factor in enumerate(stages, start=1):
        h = conv(filters * factor * factor, 3, f"upsample{i}_conv")(h)
        h = PixelShuffle(factor, name=f"upsample{i}_shuffle")(h)
        h = keras.layers.PReLU(shared_axes=[1, 2], name=f"upsample{i}_prelu")(h)
    out = conv(channels, 9, "restored")(h)
    return keras.Model(x, out, name=name)
