"""The one batch-norm factory every model uses, so its settings live in one place.

Momentum 0.9 and epsilon 1e-5 are PyTorch's defaults (the xUnit authors'
framework); Keras' own 0.99 makes the moving statistics lag for thousands of
steps, which short runs notice.  Under a multi-replica ``tf.distribute``
strategy the statistics are synchronised across replicas.
"""

import keras
from keras import ops


def batch_norm(name=None, **kwargs):
    """A ``keras.layers.BatchNormalization`` with the zoo's settings."""
    settings = {"momentum": 0.9, "epsilon": 1e-5, "synchronized": _multi_replica()}
    settings.update(kwargs)
    return keras.layers.BatchNormalization(name=name, **settings)


def inference_affine(norm):
    """``(scale, shift)`` with ``norm(x) = scale * x + shift`` at inference (moving statistics)."""
    scale = ops.rsqrt(norm.moving_variance + norm.epsilon)
    if norm.scale:
        scale = scale * norm.gamma
    shift = -norm.moving_mean * scale
    if norm.center:
        shift = shift + norm.beta
    return scale, shift


def _multi_replica():
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return tf.distribute.has_strategy() and tf.distribute.get_strategy().num_replicas_in_sync > 1
