"""TensorFlow, imported on first use, so the numpy data path runs where TF is not installed.

Keras 3 trains the zoo's models under JAX or PyTorch on machines without
TensorFlow; the modules that offer both a numpy and a TF version of a step
import ``tf`` from here.
"""

import importlib
import sys


class _LazyModule:
    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        return getattr(importlib.import_module(self._name), attr)


tf = _LazyModule("tensorflow")


def is_tensor(x):
    """``tf.is_tensor(x)`` without importing TensorFlow when it is not loaded yet."""
    return "tensorflow" in sys.modules and sys.modules["tensorflow"].is_tensor(x)


def decode_errors():
    """TensorFlow's decoding error class, or nothing when TensorFlow is absent."""
    try:
        return (importlib.import_module("tensorflow").errors.OpError,)
    except ImportError:
        return ()
