"""Loading a trained model: the one ``load_model`` that inference (:mod:`zoo.restore`), the
command line and export (:mod:`zoo.export`) use, with clear one-line errors.

``weights`` may be a shipped tag (``zoo list --pretrained``) or a ``.weights.h5`` file (both
loaded as ``zoo.build(name, weights=...)`` loads them; a file that does not fit names both), or
a ``.keras`` file (architecture included; it must hold the model named, if one is).
"""

import os
import warnings
import zipfile
from pathlib import Path

import keras

from zoo import models
from zoo.data.tasks import TASKS
from zoo.pretrained import build_with_weights, describe_error, is_tag
from zoo.registry import ModelInfo

__all__ = ["load_model", "model_info"]


def load_model(model=None, weights=None, **overrides):
    """A ``keras.Model``: ``model`` (a registry name, or a ``keras.Model`` of your own) with
    ``weights`` loaded, or the model a ``.keras`` file holds."""
    if isinstance(model, keras.Model):
        if weights is None:
            return model
        # the registry's loader, with "building" the model you gave
        return build_with_weights(model.name, weights, lambda **_: model, overrides)
    if weights is not None and not is_tag(weights) and str(weights).endswith(".keras"):
        return _load_keras_file(Path(weights), model, overrides)
    if model is None:
        raise ValueError("give a model name (or a .keras file as weights)")
    return models.build(model, weights=weights, **overrides)


def model_info(model):
    """The registry entry named like ``model``, or a generic one for a model of your own."""
    try:
        return models.info(model.name)
    except ValueError:
        channels = model.inputs[0].shape[-1]
        return ModelInfo(model.name, None, paper="not a zoo model", tasks=tuple(TASKS),
                         input="RGB" if channels == 3 else "gray")


def _load_keras_file(path, name, overrides):
    if not path.is_file():
        raise FileNotFoundError(f"weights file {os.fspath(path)!r} not found")
    if overrides:
        raise ValueError(f"builder overrides {overrides} do not apply to {path}: a .keras file "
                         "holds its own architecture")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"cannot read {path}: not a .keras (zip) file; truncated or corrupt?")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for a damaged archive
        raise ValueError(f"cannot load {path}: {describe_error(error)}") from None
    if name is not None and loaded.name != models.info(name).name:
        raise ValueError(f"'{os.fspath(path)}' holds a {loaded.name!r} model, not {name!r}: "
                         f"use --model {loaded.name}")
    return loaded
