"""Sub-pixel upsampling (Shi et al., CVPR 2016), as used by SRResNet."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="zoo")
class PixelShuffle(keras.layers.Layer):
    """(H, W, C r^2) -> (H r, W r, C), TensorFlow's depth_to_space channel order."""

    def __init__(self, factor=2, **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)

    def call(self, x):
        return ops.depth_to_space(x, self.factor)

    def compute_output_shape(self, input_shape):
        r = self.factor
        h, w, c = input_shape[1:]
        return (input_shape[0], None if h is None else h * r, None if w is None else w * r, c // (r * r))

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}
