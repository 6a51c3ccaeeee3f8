"""``model.weight{i}`` / ``model.bias{i}`` cell arrays in a MATLAB v5 file (VDSR), via scipy.

scipy returns MATLAB's own indexing, so a weight is ``H x W x in x out`` (TensorFlow's ``HWIO``;
the last conv's trailing singleton is dropped by MATLAB) and is used unflipped: the VDSR test
code runs them through ``vl_nnconv``, a cross-correlation.
"""

import os

import numpy as np

from zoo.convert.assign import ConversionError, Tensor


def weight_bias_tensors(path):
    import scipy.io

    path = os.fspath(path)
    try:
        contents = scipy.io.loadmat(path)
    except (ValueError, NotImplementedError, OSError) as error:
        raise ConversionError(f"{path}: not a MATLAB v5 file ({str(error)[:100]})") from None
    model = contents.get("model")
    if model is None or model.dtype.names is None or not {"weight", "bias"} <= set(model.dtype.names):
        names = ", ".join(k for k in contents if not k.startswith("__"))
        raise ConversionError(f"{path}: no 'model' struct with 'weight' and 'bias' cells "
                              f"(variables: {names})")
    weights = model["weight"][0, 0].ravel()
    biases = model["bias"][0, 0].ravel()
    if len(weights) != len(biases):
        raise ConversionError(f"{path}: {len(weights)} weights but {len(biases)} biases")
    tensors = []
    for i, (w, b) in enumerate(zip(weights, biases), start=1):
        tensors.append(Tensor(f"model.weight{{{i}}}", np.asarray(w), "kernel", "HWIO"))
        tensors.append(Tensor(f"model.bias{{{i}}}", np.asarray(b).ravel(), "bias"))
    return tensors
