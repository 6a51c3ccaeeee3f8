"""Converters from the authors' released files to zoo models, one module per file format.

- :mod:`zoo.convert.torch_legacy`: PyTorch state dicts in the legacy (pre-1.6) pickle format
  (the xUnit authors' ``.pkl`` files), read with a restricted unpickler.
- :mod:`zoo.convert.matconvnet`: MatConvNet ``simplenn`` networks in MATLAB v7.3 (HDF5) files
  (DnCNN), read with h5py.
- :mod:`zoo.convert.matlab_v5`: ``model.weight{i}`` / ``model.bias{i}`` cells in a MATLAB v5 file
  (VDSR), read with scipy.
- :mod:`zoo.convert.assign`: puts the tensors a reader returns onto a Keras model, checking every
  count and shape.

No converter needs PyTorch or MATLAB.  Each reader returns a list of :class:`~zoo.convert.assign.
Tensor` in the source's layer order; :func:`~zoo.convert.assign.assign` does the rest.
"""

from zoo.convert.assign import ConversionError, Tensor, assign

FORMATS = ("torch-legacy", "matconvnet-v7.3", "matlab-v5")


def read(path, fmt):
    """The tensors of the file ``path`` in format ``fmt``, in the source's layer order."""
    if fmt == "torch-legacy":
        from zoo.convert.torch_legacy import read_state_dict, state_dict_tensors
        return state_dict_tensors(read_state_dict(path))
    if fmt == "matconvnet-v7.3":
        from zoo.convert.matconvnet import simplenn_tensors
        return simplenn_tensors(path)
    if fmt == "matlab-v5":
        from zoo.convert.matlab_v5 import weight_bias_tensors
        return weight_bias_tensors(path)
    raise ValueError(f"unknown weights format {fmt!r}; known: {', '.join(FORMATS)}")


def convert(model, path, fmt):
    """Loads the authors' file ``path`` (format ``fmt``) into ``model`` in place; returns it."""
    return assign(model, read(path, fmt), source=path)


__all__ = ["ConversionError", "FORMATS", "Tensor", "assign", "convert", "read"]
