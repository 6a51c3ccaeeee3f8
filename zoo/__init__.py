"""A Keras 3 model zoo for image restoration: MemNet, xUnit nets and NLRN, exact to the papers.

>>> import zoo
>>> zoo.list_models("x*")
>>> model = zoo.build("xdncnn")
>>> model = zoo.build("xdncnn", weights="official-s25")   # the authors' weights, fetched once
>>> zoo.list_pretrained("xdncnn")    # the cards: source, licence, our PSNR beside the paper's
>>> zoo.count_params(model)          # xUnit paper convention: 303616

``import zoo`` is instant: Keras (and TensorFlow) load on first use of a name below, so
``zoo --help`` answers without them.  Whenever Keras is imported (before or after ``zoo``),
the zoo's layers get registered, so a ``.keras`` file saved by the zoo loads with plain
``keras.saving.load_model``; and Keras starts without TensorFlow's C++ log unless asked
(``ZOO_VERBOSE=1``, ``zoo --verbose`` or your own ``TF_CPP_MIN_LOG_LEVEL``;
:func:`zoo._tf.on_keras_import`).
"""

import importlib

from zoo._tf import on_keras_import

on_keras_import()

_API = {
    "build": "zoo.models", "describe": "zoo.models", "info": "zoo.models",
    "list_models": "zoo.models", "register": "zoo.registry", "count_params": "zoo.params",
    "list_pretrained": "zoo.pretrained",
}
_SUBMODULES = ("layers", "models", "recipes", "data", "metrics", "protocol", "evaluate", "train",
               "restore", "checkpoint", "export", "pretrained", "official", "analysis")

__all__ = list(_API)
__version__ = "0.1.0"


def __getattr__(name):
    """PEP 562: the public API and the subpackages, imported on first access."""
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"zoo.{name}")
    else:
        raise AttributeError(f"module 'zoo' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_API) | set(_SUBMODULES))
