"""MemNet (Tai et al., ICCV 2017), as in the authors' released network (SPEC §2)."""

import keras

from zoo.layers import MemoryBlock, WeightedSum, batch_norm
from zoo.models._common import conv, image_input
from zoo.registry import register


@register("memnet", paper="MemNet (Tai et al., ICCV 2017)", tasks=("denoise", "sr", "jpeg"),
          input="Y", upsampling="interpolated", paper_params="677K", convention="kernels")
def memnet(channels=1, blocks=6, recursions=6, filters=64, multi_supervised=False,
           long_term=True, short_term=True, name="memnet"):
    """MemNet with M = ``blocks`` memory blocks of R = ``recursions`` (§3, Fig. 2).

    - Feature extraction: BN, ReLU, conv3x3 to ``filters`` = B_0 (pre-activation,
      as in the released code).
    - M memory blocks; block m gates [B_0 ... B_(m-1), H^1 ... H^R] to B_m
      (see ``zoo.layers.memory``).  ``long_term=False`` is MemNet_NL and
      ``short_term=False`` MemNet_NS (Table 1).
    - Reconstruction: BN, ReLU, conv3x3 to ``channels``, plus the input.
    - ``multi_supervised`` (§3.3): every B_m is reconstructed by the same conv
      (own BN per head) to y_m = x + f_rec(B_m); the output is y = sum w_m y_m.
      The model then returns a dict ``{"y": y, "y_1": y_1, ..., "y_M": y_M}``,
      so the intermediate predictions of Fig. 6 come with every call.

    Depth 1 + M (2R + 1) + 1 (M6R6: 80).  Conv kernels: M6R6 676,992 (Table 2
    "677K"), M4R6 435,328, M6R8 726,144, M10R10 1,373,312.
    Input: gray (denoising) or the Y channel (SR on bicubic-upsampled input, JPEG).
    """
    x = image_input(channels)
    h = batch_norm(name="feature_bn")(x)
    h = keras.layers.ReLU(name="feature_relu")(h)
    memories = [conv(filters, 3, "feature_conv")(h)]
    for m in range(1, blocks + 1):
        block = MemoryBlock(filters, recursions, long_term, short_term, name=f"memory_block{m}")
        memories.append(block(memories if long_term else memories[-1:]))

    reconstruction = conv(channels, 3, "reconstruction_conv")
    if not multi_supervised:
        h = batch_norm(name="reconstruction_bn")(memories[-1])
        h = keras.layers.ReLU(name="reconstruction_relu")(h)
        out = keras.layers.Add(name="restored")([x, reconstruction(h)])
        return keras.Model(x, out, name=name)

    predictions = {}
    for m, memory in enumerate(memories[1:], start=1):
        h = batch_norm(name=f"reconstruction{m}_bn")(memory)
        h = keras.layers.ReLU(name=f"reconstruction{m}_relu")(h)
        predictions[f"y_{m}"] = keras.layers.Add(name=f"y_{m}")([x, reconstruction(h)])
    y = WeightedSum(name="y")(list(predictions.values()))
    return keras.Model(x, {"y": y, **predictions}, name=name)


def depth(blocks, recursions):
    """Conv layers on MemNet's longest path: 1 + M (2R + 1) + 1 (§5.1)."""
    return 1 + blocks * (2 * recursions + 1) + 1
