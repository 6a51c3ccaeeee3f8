"""Loading a trained model: the one ``load_model`` that inference (:mod:`zoo.restore`), the
command line and export (:mod:`zoo.export`) use, with clear one-line errors.

``weights`` may be a shipped tag (``zoo list --pretrained``), a ``.weights.h5`` file (loaded
into the model built with the overrides; a file that does not fit names both), or a ``.keras``
file (architecture included; it must hold the model named, if one is).
"""

import os
import warnings
import zipfile
from pathlib import Path

import keras

from zoo import models
from zoo.data.tasks import TASKS
from zoo.pretrained import describe_error, is_tag, load_weights
from zoo.registry import ModelInfo

__all__ = ["load_model", "model_info"]


def load_model(model=None, weights=None, **overrides):
    """A ``keras.Model``: ``model`` (a registry name, or a ``keras.Model`` of your own) with
    ``weights`` loaded, or the model a ``.keras`` file holds."""
    if isinstance(model, keras.Model):
        if weights is not None:
            _load_weights(model, weights, model.name, overrides)
        return model
    if weights is not None and not is_tag(weights) and str(weights).endswith(".keras"):
        return _load_keras_file(_existing(weights), model, overrides)
    if model is None:
        raise ValueError("give a model name (or a .keras file as weights)")
    models.info(model)  # an unknown name: a clear error that suggests close ones
    if weights is None or is_tag(weights):
        return models.build(model, **overrides, **({} if weights is None else
                                                   {"weights": str(weights)}))
    built = models.build(model, **overrides)
    _load_weights(built, weights, model, overrides)
    return built


def model_info(model):
    """The registry entry named like ``model``, or a generic one for a model of your own."""
    try:
        return models.info(model.name)
    except ValueError:
        channels = model.inputs[0].shape[-1]
        return ModelInfo(model.name, None, paper="not a zoo model", tasks=tuple(TASKS),
                         input="RGB" if channels == 3 else "gray")


def _existing(path):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {os.fspath(path)!r} not found")
    return path


def _load_keras_file(path, name, overrides):
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


def _load_weights(model, weights, name, overrides):
    path = _existing(weights)
    if not path.name.endswith(".h5"):
        raise ValueError(f"weights for {name!r} must be a .weights.h5 or .keras file, got {path}")
    load_weights(model, path, name, overrides)
