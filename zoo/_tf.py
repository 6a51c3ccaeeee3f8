"""TensorFlow, imported on first use, so the numpy data path runs where TF is not installed.

Keras 3 trains the zoo's models under JAX or PyTorch on machines without
TensorFlow; the modules that offer both a numpy and a TF version of a step
import ``tf`` from here.
"""

import importlib
import os
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


def quiet_start():
    """Imports Keras (and TensorFlow, when it is the backend) with file descriptor 2 closed to
    TensorFlow's C++ start-up log: the absl lines, oneDNN and CPU-feature notes, and
    ``failed call to cuInit: ... CUDA error`` on a CPU-only machine, which reads like a failure.

    TF 2.21 prints them whatever ``TF_CPP_MIN_LOG_LEVEL`` says, so they are silenced here, and
    that variable is set to 3 for what TensorFlow logs later, unless the user set it (then
    TensorFlow's own levels apply) or ``ZOO_VERBOSE=1``.  Python errors still surface: they are
    raised after the descriptor is restored.
    """
    if ("keras" in sys.modules or "TF_CPP_MIN_LOG_LEVEL" in os.environ
            or os.environ.get("ZOO_VERBOSE") == "1"):
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"   # what TensorFlow logs later (conversion, tf.data)
    sys.stderr.flush()
    try:
        saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    except OSError:  # no file descriptor 2 to borrow (a detached process): nothing to silence
        return
    os.dup2(null, 2)
    try:
        import keras

        if keras.backend.backend() == "tensorflow":
            importlib.import_module("tensorflow").config.list_physical_devices()  # cuInit
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
