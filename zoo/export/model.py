"""The Keras model to export (loaded by :func:`zoo.checkpoint.load_model`): the single-output
inference model, prediction and FLOP counting.
"""

import keras
import numpy as np
import tensorflow as tf


def inference_model(model):
    """The single-output model to export: MemNet's multi-supervised dict gives its final ``y``."""
    if isinstance(model.output, dict):
        return keras.Model(model.input, model.output["y"], name=model.name)
    return model


def model_flops(model, height, width):
    """FLOPs of one ``height x width`` input: 2 x multiply-adds of every convolution and matmul.

    Counted on the traced TensorFlow graph, so shared layers count once per call (MemNet's
    recursions) and sub-pixel stages at their own resolution; biases, BN and activations are
    left out.  xDnCNN: 601,344 FLOP per pixel.
    """
    channels = model.inputs[0].shape[-1]
    # a plain trace (no AutoGraph, which cannot parse a lambda's source and warns)
    forward = tf.function(lambda x: model(x, training=False), autograph=False)
    function = forward.get_concrete_function(
        tf.TensorSpec((1, height, width, channels), tf.float32))
    total = 0
    for op in function.graph.get_operations():
        if op.type not in ("Conv2D", "DepthwiseConv2dNative", "MatMul", "BatchMatMulV2"):
            continue
        out = np.prod(op.outputs[0].shape.as_list(), dtype=np.int64)
        kernel = op.inputs[1].shape.as_list()
        if op.type == "Conv2D":
            per_output = kernel[0] * kernel[1] * kernel[2]
        elif op.type == "DepthwiseConv2dNative":
            per_output = kernel[0] * kernel[1]
        else:  # the contracted dimension of the first operand
            transposed = op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x")
            per_output = op.inputs[0].shape.as_list()[-2 if transposed else -1]
        total += 2 * int(out) * per_output
    return total
