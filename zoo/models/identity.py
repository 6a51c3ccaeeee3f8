"""Residual restorers started as the identity (their last conv zeroed).

Every residual zoo model adds its last conv's output to the input (xUnit nets subtract it).
Under the papers' random initialisation that conv first predicts a residual of standard
deviation near 1 (about 6 dB on [0, 1] images), and a short run spends most of its steps
undoing it.  With the conv zeroed, training starts from the degraded input itself;
``zoo.train`` does this by default (``TrainConfig.identity_start``).
"""

import keras
import numpy as np

__all__ = ["is_residual", "start_as_identity"]


def _last_conv(model):
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    return convs[-1] if convs else None


def is_residual(model):
    """Whether ``model``'s last conv feeds an addition to the input rather than an output."""
    last = _last_conv(model)
    if last is None:
        return False
    outputs = {id(t) for t in keras.tree.flatten(model.outputs)}
    return not any(id(node.output_tensors[0]) in outputs for node in last._inbound_nodes)


def start_as_identity(model):
    """Zeroes the last convolution of a residual restorer, so that it starts as the identity;
    a non-residual model (its last conv is the output: zeroing it would give a black image)
    is refused.  Returns ``model``."""
    if not is_residual(model):
        raise ValueError(f"{model.name} is not residual (its last conv is its output): zeroing "
                         "that conv would give a black image, not the identity")
    for weight in _last_conv(model).weights:
        weight.assign(np.zeros(weight.shape, weight.dtype))
    return model
