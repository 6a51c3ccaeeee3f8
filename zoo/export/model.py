"""The Keras model to export: loading (registry name, tag, ``.weights.h5`` or ``.keras``), the
single-output inference model, prediction and FLOP counting.
"""

import warnings
import zipfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from zoo import models
from zoo.registry import ModelInfo
from zoo.pretrained import describe_error, is_tag, load_weights
from zoo.data.tasks import TASKS


def load_model(model, weights=None, overrides=None):
    """``(keras.Model, ModelInfo)``: a registry model with ``weights`` loaded, or a built one.

    ``model`` is a registry name (a clear error suggests close names) or a ``keras.Model``.
    ``weights`` is a shipped tag (``zoo list --pretrained``), a ``.weights.h5`` file (loaded into
    the model built with ``overrides``) or a ``.keras`` file (architecture included; it must
    hold the model ``model`` names).
    """
    overrides = dict(overrides or {})
    if isinstance(model, keras.Model):
        if weights is not None:
            _load_weights(model, weights, model.name, overrides)
        return model, _info_for(model)
    info = models.info(model)
    if weights is None:
        return models.build(model, **overrides), info
    if is_tag(weights):
        return models.build(model, weights=str(weights), **overrides), info
    path = _existing(weights)
    if path.name.endswith(".keras"):
        if overrides:
            raise ValueError(f"builder overrides {overrides} do not apply to {path}: "
                             "a .keras file holds its own architecture")
        loaded = _load_keras_file(path)
        if loaded.name != info.name:
            raise ValueError(f"{path} holds a {loaded.name!r} model, not {info.name!r}: "
                             f"export it with --model {loaded.name}")
        return loaded, info
    built = models.build(model, **overrides)
    _load_weights(built, path, model, overrides)
    return built, info


def _existing(path):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} not found")
    return path


def _load_keras_file(path):
    if not zipfile.is_zipfile(path):
        raise ValueError(f"cannot read {path}: not a .keras (zip) file; truncated or corrupt?")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for a damaged archive
        raise ValueError(f"cannot load {path}: {describe_error(error)}") from error


def _load_weights(model, weights, name, overrides):
    path = _existing(weights)
    if not path.name.endswith(".h5"):
        raise ValueError(f"weights for {name!r} must be a .weights.h5 file here (a .keras file "
                         f"goes with a registry name), got {path}")
    load_weights(model, path, name, overrides)


def _info_for(model):
    """The registry entry named like the model, or a generic one for a model of your own."""
    try:
        return models.info(model.name)
    except ValueError:
        channels = model.inputs[0].shape[-1]
        return ModelInfo(model.name, None, paper="not a zoo model", tasks=tuple(TASKS),
                                  input="RGB" if channels == 3 else "gray")


def inference_model(model):
    """The single-output model to export: MemNet's multi-supervised dict gives its final ``y``."""
    if isinstance(model.output, dict):
        return keras.Model(model.input, model.output["y"], name=model.name)
    return model


def predict(model, image):
    image = np.asarray(image, np.float32)[None]
    return keras.ops.convert_to_numpy(model(image, training=False))[0].astype(np.float32)


def output_ratio(model, channels):
    """Output/input size ratio (the scale of a sub-pixel SR model, 1 otherwise)."""
    return predict(model, np.zeros((8, 8, channels), np.float32)).shape[0] // 8


def model_flops(model, height, width):
    """FLOPs of one ``height x width`` input: 2 x multiply-adds of every convolution and matmul.

    Counted on the traced TensorFlow graph, so shared layers count once per call (MemNet's
    recursions) and sub-pixel stages at their own resolution; biases, BN and activations are
    left out.  xDnCNN: 601,344 FLOP per pixel.
    """
    channels = model.inputs[0].shape[-1]
    function = tf.function(lambda x: model(x, training=False)).get_concrete_function(
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
