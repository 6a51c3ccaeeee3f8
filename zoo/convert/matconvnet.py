"""MatConvNet ``simplenn`` networks in MATLAB v7.3 files (HDF5), read with h5py.

``net.layers`` is a cell array of structs; a ``conv`` layer's ``weights`` cell holds the filters
(MATLAB ``H x W x in x out``) and the biases.  HDF5 stores MATLAB's column-major arrays with the
dimensions reversed, so h5py returns ``out x in x W x H`` and the transpose ``.T`` gives back
MATLAB's indexing, which is TensorFlow's ``HWIO``: ``vl_nnconv`` correlates as TF does, so no
flip.  MATLAB drops trailing singleton dimensions (``3 x 3 x 64`` for one output channel).
``relu`` layers carry no weights; ``bnorm`` layers are refused (DnCNN's released files have their
batch norms merged into the conv biases).
"""

import os

import numpy as np

from zoo.convert.assign import ConversionError, Tensor


def _text(dataset):
    return "".join(map(chr, np.asarray(dataset[()]).ravel()))


def simplenn_tensors(path):
    """The conv filters and biases of a ``simplenn`` ``net``, in layer order."""
    import h5py

    path = os.fspath(path)
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise ConversionError(f"{path}: not a MATLAB v7.3 (HDF5) file") from None
    with f:
        if "net" not in f or "layers" not in f["net"]:
            raise ConversionError(f"{path}: no MatConvNet 'net.layers' in this file "
                                  f"(variables: {', '.join(k for k in f if not k.startswith('#'))})")
        tensors, convs = [], 0
        for index, ref in enumerate(np.asarray(f["net"]["layers"][()]).ravel(), start=1):
            layer = f[ref]
            kind = _text(layer["type"]) if "type" in layer else "?"
            if kind == "relu":
                if "leak" in layer and float(np.asarray(layer["leak"][()]).ravel()[0]) != 0.0:
                    raise ConversionError(f"{path}: layer {index} is a leaky ReLU")
                continue
            if kind != "conv":
                raise ConversionError(f"{path}: layer {index} is a {kind!r} layer; only conv and "
                                      "relu (batch norm merged into the biases) are supported")
            stride = np.asarray(layer["stride"][()]).ravel()
            if np.any(stride != 1):
                raise ConversionError(f"{path}: layer {index} has stride {stride.tolist()}")
            filters, biases = (np.asarray(f[r][()]) for r in np.asarray(layer["weights"][()]).ravel())
            convs += 1
            tensors.append(Tensor(f"net.layers{{{index}}}.weights{{1}}", filters.T, "kernel", "HWIO"))
            tensors.append(Tensor(f"net.layers{{{index}}}.weights{{2}}", biases.ravel(), "bias"))
    if not convs:
        raise ConversionError(f"{path}: no conv layers")
    return tensors
