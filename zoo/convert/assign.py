"""Put a released file's tensors onto a zoo model, checking every count and shape.

A reader turns a file into a list of :class:`Tensor` (name, array, role, layout) in the order of
the source's layers.  :func:`assign` walks the model's layers in order and takes from that list
what each layer needs:

- ``Conv2D``: a kernel, and a bias if the layer has one.  ``OIHW`` kernels (PyTorch) become
  Keras' ``HWIO``; ``HWIO`` kernels (MATLAB's ``H x W x in x out``) are taken as they are.
- ``DepthwiseConv2D``: an ``OIHW`` kernel ``(C, 1, k, k)`` becomes ``(k, k, C, 1)``, then a bias.
- ``BatchNormalization``: gamma, beta, mean, var; or, when the source merged the batch norm into
  the conv before it (DnCNN's released files), that conv's bias ``b``: gamma 1, beta ``b``,
  moving mean 0 and moving variance ``1 - epsilon``, so ``BN(x) = x + b`` at inference to float
  rounding, which is what ``conv(x) + b`` computes.

Kernels are never flipped: PyTorch, MatConvNet (``vl_nnconv``) and TensorFlow all compute
cross-correlation.  Anything that does not fit raises :class:`ConversionError` naming the tensor.
"""

import dataclasses
import os

import keras
import numpy as np

ROLES = ("kernel", "bias", "gamma", "beta", "mean", "var")


class ConversionError(ValueError):
    """A released file that does not fit the model (or is not the format it claims)."""


@dataclasses.dataclass
class Tensor:
    name: str        # where it is in the source file, for error messages
    array: np.ndarray
    role: str        # one of ROLES
    layout: str = ""  # kernels: "OIHW" (PyTorch) or "HWIO" (MATLAB)


def weighted_layers(model):
    """The model's layers that own weights, in order, with composite layers (XUnit) opened up."""
    out = []

    def visit(layer):
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D,
                              keras.layers.BatchNormalization)):
            out.append(layer)
            return
        children = [c for c in getattr(layer, "_layers", []) if c.weights]
        if children:
            for child in children:
                visit(child)
        elif layer.weights:
            raise ConversionError(f"layer {layer.name!r} ({type(layer).__name__}) has weights "
                                  "no converter maps")

    for layer in model.layers:
        if layer.weights:
            visit(layer)
    return out


def _keras_kernel(tensor, depthwise):
    a = tensor.array
    if tensor.layout == "OIHW":
        if a.ndim != 4:
            raise ConversionError(f"{tensor.name}: a kernel of shape {a.shape} is not 4-D OIHW")
        return a.transpose(2, 3, 0, 1) if depthwise else a.transpose(2, 3, 1, 0)
    if tensor.layout == "HWIO":
        if a.ndim == 3:  # MATLAB drops a trailing singleton dimension (one output channel)
            a = a[..., None]
        if depthwise and a.ndim == 4:
            raise ConversionError(f"{tensor.name}: HWIO depthwise kernels are not supported")
        return a
    raise ConversionError(f"{tensor.name}: unknown kernel layout {tensor.layout!r}")


class _Stream:
    def __init__(self, tensors, source):
        self.tensors, self.position, self.source = list(tensors), 0, source

    def peek(self):
        return self.tensors[self.position] if self.position < len(self.tensors) else None

    def take(self, role, layer):
        tensor = self.peek()
        if tensor is None:
            raise ConversionError(f"{self.source}: the file ends after {len(self.tensors)} tensors, "
                                  f"but layer {layer.name!r} still needs a {role}: the file holds a "
                                  "smaller model")
        if tensor.role != role:
            raise ConversionError(f"{self.source}: layer {layer.name!r} needs a {role}, the file's "
                                  f"next tensor is {tensor.name} (a {tensor.role})")
        self.position += 1
        return tensor


def _put(variable, value, tensor, source):
    value = np.asarray(value, dtype="float32").reshape(value.shape)
    if tuple(value.shape) != tuple(variable.shape):
        raise ConversionError(f"{source}: {tensor.name} has shape {tuple(tensor.array.shape)} "
                              f"({tuple(value.shape)} in Keras' layout), but {variable.path} needs "
                              f"{tuple(variable.shape)}")
    return value


def assign(model, tensors, source="weights file"):
    """Copies ``tensors`` onto ``model``'s layers in order (module docstring); returns ``model``.

    Every value is checked before any variable changes, so a file that does not fit leaves the
    model as it was.
    """
    source = os.fspath(source)
    layers = weighted_layers(model)
    convs = sum(not isinstance(layer, keras.layers.BatchNormalization) for layer in layers)
    kernels = sum(t.role == "kernel" for t in tensors)
    if kernels != convs:
        raise ConversionError(f"{source}: the file has {kernels} conv kernels, model "
                              f"{model.name!r} has {convs} conv layers: the file is for another model")
    stream, updates = _Stream(tensors, source), []
    for layer in layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            nxt = stream.peek()
            if nxt is not None and nxt.role == "bias":  # merged into the previous conv
                bias = stream.take("bias", layer)
                beta = _put(layer.beta, bias.array.ravel(), bias, source)
                updates += [(layer.gamma, np.ones_like(beta)), (layer.beta, beta),
                            (layer.moving_mean, np.zeros_like(beta)),
                            (layer.moving_variance, np.full_like(beta, 1.0 - layer.epsilon))]
                continue
            for role, variable in zip(("gamma", "beta", "mean", "var"),
                                      (layer.gamma, layer.beta, layer.moving_mean,
                                       layer.moving_variance)):
                tensor = stream.take(role, layer)
                updates.append((variable, _put(variable, tensor.array.ravel(), tensor, source)))
            continue
        depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
        kernel_variable = layer.kernel
        tensor = stream.take("kernel", layer)
        updates.append((kernel_variable, _put(kernel_variable, _keras_kernel(tensor, depthwise),
                                              tensor, source)))
        if layer.use_bias:
            tensor = stream.take("bias", layer)
            updates.append((layer.bias, _put(layer.bias, tensor.array.ravel(), tensor, source)))
    left = stream.peek()
    if left is not None:
        rest = len(stream.tensors) - stream.position
        raise ConversionError(f"{source}: {rest} tensor(s) left over after the model's last layer, "
                              f"from {left.name} on: the file holds a larger model")
    for variable, value in updates:
        variable.assign(value)
    return model
