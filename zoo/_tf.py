"""TensorFlow, imported on first use, so the numpy data path runs where TF is not installed.

Keras 3 trains the zoo's models under JAX or PyTorch on machines without
TensorFlow; the modules that offer both a numpy and a TF version of a step
import ``tf`` from here.
"""

import importlib
import importlib.abc
import importlib.machinery
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


def _silenced(run):
    """Runs ``run()`` with file descriptor 2 pointed at /dev/null (Python errors still surface:
    they are raised after the descriptor is restored)."""
    sys.stderr.flush()
    try:
        saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    except OSError:  # no file descriptor 2 to borrow (a detached process): nothing to silence
        return run()
    os.dup2(null, 2)
    try:
        return run()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _register_zoo_objects():
    """The zoo's layers and optimiser, registered with Keras so saved models load."""
    importlib.import_module("zoo.layers")
    importlib.import_module("zoo.recipes")


class _KerasLoader(importlib.abc.Loader):
    """Keras' own loader, then the zoo's objects registered; with TensorFlow's start-up log
    silenced when ``quiet``."""

    def __init__(self, loader, quiet):
        self.loader, self.quiet = loader, quiet

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        def run():
            self.loader.exec_module(module)
            if module.backend.backend() == "tensorflow":
                importlib.import_module("tensorflow").config.list_physical_devices()  # cuInit

        _silenced(run) if self.quiet else self.loader.exec_module(module)
        _register_zoo_objects()


class _KerasFinder(importlib.abc.MetaPathFinder):
    """Finds ``keras`` as the other finders do and wraps its loader in :class:`_KerasLoader`."""

    def __init__(self, quiet):
        self.quiet = quiet

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        sys.meta_path.remove(self)  # once, and not for the lookup below
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _KerasLoader(spec.loader, self.quiet)
        return spec


def verbose():
    """True when the user asked for TensorFlow's own log: ``ZOO_VERBOSE=1`` or their own
    ``TF_CPP_MIN_LOG_LEVEL``."""
    return os.environ.get("ZOO_VERBOSE") == "1" or (
        "TF_CPP_MIN_LOG_LEVEL" in os.environ and not _set_by_zoo)


_set_by_zoo = False


def on_keras_import():
    """Arranges the first import of Keras: the zoo's layers get registered right after it (so
    ``import zoo; keras.saving.load_model("run/best.keras")`` works), and, unless
    :func:`verbose`, file descriptor 2 is silenced while it loads: TensorFlow's C++ start-up log
    (the absl lines, oneDNN and CPU-feature notes, and ``failed call to cuInit: ... CUDA error``
    on a CPU-only machine, which reads like a failure).  Nothing is imported now while Keras is
    not loaded yet, so ``import zoo`` stays instant.

    TF 2.21 prints those lines whatever ``TF_CPP_MIN_LOG_LEVEL`` says, so they are silenced
    here, and that variable is set to 3 for what TensorFlow logs later, unless :func:`verbose`.
    """
    global _set_by_zoo
    if "keras" in sys.modules:
        _register_zoo_objects()
        return
    quiet = not verbose()
    if quiet and "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"   # what TensorFlow logs later
        _set_by_zoo = True
    for finder in [f for f in sys.meta_path if isinstance(f, _KerasFinder)]:
        sys.meta_path.remove(finder)
    sys.meta_path.insert(0, _KerasFinder(quiet))


def set_verbose():
    """``zoo --verbose``: TensorFlow's own log from here on (Keras not imported yet)."""
    global _set_by_zoo
    os.environ["ZOO_VERBOSE"] = "1"
    if _set_by_zoo:
        del os.environ["TF_CPP_MIN_LOG_LEVEL"]
        _set_by_zoo = False
    if "keras" not in sys.modules:
        on_keras_import()
