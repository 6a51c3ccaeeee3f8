"""TFLite export for LiteRT (Android): float32, float16, dynamic-range and full-integer models.

    export("xdncnn", "xdncnn_int8.tflite", weights="runs/xdncnn/best.keras", mode="int8")

Conversion path: the Keras model is written as a SavedModel with a fixed ``(1, H, W, C)`` or a
resizable ``(1, None, None, C)`` input signature (``model.export(format="tf_saved_model")``) and
converted by ``tf.lite.TFLiteConverter.from_saved_model``.  (``from_concrete_functions`` given the
Keras model silently yields a NaN model under Keras 3.)  Modes:

- ``float32``: weights and arithmetic in float32.
- ``float16``: float16 weights (half the file); CPU kernels dequantize them to float32 at load,
  the GPU delegate computes in float16.
- ``dynamic``: dynamic-range quantization: int8 weights, activations quantized on the fly.
- ``int8``: full-integer quantization, int8 (or uint8) input and output, activation ranges
  calibrated on degraded patches drawn from the task's own ``tf.data`` pipeline
  (``zoo.data.pipeline.training_dataset``) on the built-in or given images.
- ``int16x8``: int8 weights and int16 activations, int16 input and output, calibrated as int8
  (TFLite's mode for image restoration).  Only LiteRT's reference kernels run it: no XNNPACK,
  no GPU delegate.

Checks: the file uses LiteRT's builtin ops only (ops that would need the Flex / SELECT_TF_OPS
delegate fail the export with their list, unless ``allow_select_ops``), and an int8 graph is
searched for float islands (ops that read or write float tensors), which are reported.

Validation on the LiteRT interpreter (``ai_edge_litert``): the .tflite and the Keras model restore
the validation images; the card gets the PSNR of TFLite vs Keras, PSNR/SSIM of each against the
clean image under the SPEC §4 protocol, the drop caused by quantization, the file size, and the
median latency at 256x256 and 512x512 with 1 and 2 threads, with and without XNNPACK.  Everything
goes into ``<name>.card.yaml`` beside ``<name>.tflite``; both are written through temporary files,
so a failed export leaves no partial file.
"""

import collections
import contextlib
import dataclasses
import io
import os
import re
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import ops
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from zoo import qat, registry
from zoo.data.demo import demo_images
from zoo.data.pipeline import check_levels, evaluation_pairs, named_images, training_dataset
from zoo.export_card import machine, write_card
from zoo.gpu_rewrites import TransposedConvShuffle, gpu_rewrite
from zoo.layers import FoldedNormConv, XUnit
from zoo.layers.normalization import inference_affine
from zoo.metrics import protocol_metrics, psnr
from zoo.params import count_params
from zoo.pretrained import describe_error, is_tag, load_weights
from zoo.train import input_mode

__all__ = ["MODES", "export", "load_model", "convert", "inspect_graph", "GraphReport", "LiteRT",
           "model_flops"]

MODES = ("float32", "float16", "dynamic", "int8", "int16x8")
CALIBRATED = ("int8", "int16x8")      # full-integer modes: activation ranges from calibration
IO_DTYPES = ("int8", "uint8")
DEFAULT_LEVELS = {"denoise": 25, "sr": 3, "jpeg": 10}
PIPELINE_TASKS = tuple(DEFAULT_LEVELS)
CALIBRATION_PATCH = 64       # input side of the calibration patches of a resizable model
CALIBRATION_MIN = 4          # fewest calibration inputs of a large fixed-size model
LATENCY_SIZES = (256, 512)
LATENCY_THREADS = (1, 2)
SLOW_BUILTIN = 10            # a builtin setting this many times slower than XNNPACK is timed once
RESIZE_PROBE = ((37, 50), (64, 45))  # two odd input sizes a resizable model must run at
AGREES_DB = 30.0             # a resized run "works" if it agrees with Keras to this PSNR
# The CPU runtime of a file without a card: XNNPACK, LiteRT's own default.  XNNPACK runs depthwise
# kernels of more than 25 taps ~50x slower than 5x5 ones (512x512x64 float32: 9x9 655 ms, 5x5 12 ms;
# LiteRT's builtin kernels: 99 ms), so every mode splits xUnit 9x9 depthwise convs into four pieces
# of at most 5x5 (XUNIT_SPLIT, exact in float), after which XNNPACK is the faster runtime.  In int8
# the pieces' int8 partial sums cost a trained xDnCNN 0.2 dB more than the whole 9x9 (0.44 vs
# 0.24 dB on Set12), but the whole 9x9 runs ~4x slower (builtin kernels; far slower on XNNPACK):
# xunit_split=0 exports that one.  Every export times both runtimes and its card names the faster,
# which LiteRT(path) then uses (benchmarks/results/speed.md).
DEFAULT_XNNPACK = True
GATE_CLIP = 3.0              # |d| bound of the xUnit gate in int8 graphs (see xunit_options)
XUNIT_SPLIT = {"float32": 5, "float16": 5, "dynamic": 5, "int8": 5, "int16x8": 5}
# int8 exports with a fixed input size run each xUnit depthwise conv as a grouped conv on 4x4
# pixel blocks instead (XUnit(block=4), exact): XNNPACK runs it on its int8 GEMM kernels, in one
# accumulation with no rounded partial sums; one int8 xUnit at 512x512x64 takes about half the
# split's time (benchmarks/results/xunit_pieces.md).  A resizable graph computes the block shapes
# at run time, which XNNPACK does not delegate (the block conv alone: 102 ms), so resizable
# exports keep the split; float graphs too (there the split is faster).
XUNIT_BLOCK = 4
# quantization-aware fine-tuning (zoo.qat): Adam steps on batches of degraded patches
QAT_STEPS = 300
QAT_LEARNING_RATE = 1e-4
QAT_PATCH = 32
QAT_BATCH = 16

# The ops LiteRT's GPU delegate runs, as its documentation lists them (float16 and float32;
# int8 graphs through its quantized-model support), plus DEQUANTIZE of float16 weights.
GPU_DELEGATE_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEQUANTIZE",
    "EXP", "FULLY_CONNECTED", "LOGICAL_AND", "LOGISTIC", "MAX_POOL_2D", "MAXIMUM", "MINIMUM",
    "MUL", "PAD", "PRELU", "RELU", "RELU6", "RESHAPE", "RESIZE_BILINEAR", "SOFTMAX",
    "STRIDED_SLICE", "SUB", "TRANSPOSE_CONV"})
_FLOAT_TYPES = {"FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16"}
_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
_TYPE_NAMES = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}


# --- the Keras model -----------------------------------------------------------------------------

def load_model(model, weights=None, overrides=None):
    """``(keras.Model, ModelInfo)``: a registry model with ``weights`` loaded, or a built one.

    ``model`` is a registry name (a clear error suggests close names) or a ``keras.Model``.
    ``weights`` is a shipped tag (``zoo list --pretrained``), a ``.weights.h5`` file (loaded into
    the model built with ``overrides``) or a ``.keras`` file (architecture included; it must
    hold the model ``model`` names).
    """
    overrides = dict(overrides or {})
    if isinstance(model, keras.Model):
        if weights is not None:
            _load_weights(model, weights, model.name, overrides)
        return model, _info_for(model)
    info = registry.info(model)
    if weights is None:
        return registry.build(model, **overrides), info
    if is_tag(weights):
        return registry.build(model, weights=str(weights), **overrides), info
    path = _existing(weights)
    if path.name.endswith(".keras"):
        if overrides:
            raise ValueError(f"builder overrides {overrides} do not apply to {path}: "
                             "a .keras file holds its own architecture")
        loaded = _load_keras_file(path)
        if loaded.name != info.name:
            raise ValueError(f"{path} holds a {loaded.name!r} model, not {info.name!r}: "
                             f"export it with --model {loaded.name}")
        return loaded, info
    built = registry.build(model, **overrides)
    _load_weights(built, path, model, overrides)
    return built, info


def _existing(path):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} not found")
    return path


def _load_keras_file(path):
    if not zipfile.is_zipfile(path):
        raise ValueError(f"cannot read {path}: not a .keras (zip) file; truncated or corrupt?")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for a damaged archive
        raise ValueError(f"cannot load {path}: {describe_error(error)}") from error


def _load_weights(model, weights, name, overrides):
    path = _existing(weights)
    if not path.name.endswith(".h5"):
        raise ValueError(f"weights for {name!r} must be a .weights.h5 file here (a .keras file "
                         f"goes with a registry name), got {path}")
    load_weights(model, path, name, overrides)


def describe_error(error):
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _info_for(model):
    """The registry entry named like the model, or a generic one for a model of your own."""
    try:
        return registry.info(model.name)
    except ValueError:
        channels = model.inputs[0].shape[-1]
        return registry.ModelInfo(model.name, None, paper="not a zoo model", tasks=PIPELINE_TASKS,
                                  input="RGB" if channels == 3 else "gray")


def inference_model(model):
    """The single-output model to export: MemNet's multi-supervised dict gives its final ``y``."""
    if isinstance(model.output, dict):
        return keras.Model(model.input, model.output["y"], name=model.name)
    return model


def xunit_options(model, gate_clip=None, split=None, block=None, pointwise_norm=False):
    """A copy of a functional ``model`` whose xUnits use the export-time options of
    :class:`zoo.layers.XUnit` (same weights), or ``model`` itself if nothing changes.

    ``split``: each k x k depthwise conv runs as a sum of depthwise convs of at most
    split x split taps (exact up to float rounding; XNNPACK runs kernels of up to 25 taps far
    faster than 9x9).
    ``block``: each depthwise conv runs as a grouped conv on block x block pixel blocks
    (exact up to float rounding; in int8 at a fixed input size, faster than ``split``).
    ``gate_clip``: Gaussian gates read ``clip(d, -gate_clip, gate_clip)``, which gives int8
    graphs ten times finer steps for ``d * -d`` at the default 3.
    """
    changes = {}
    for layer in model.layers:
        if not isinstance(layer, XUnit):
            continue
        change = {}
        if block:
            change["block"] = int(block)
        elif split and layer.kernel_size > split:
            change["split"] = int(split)
        if gate_clip and layer.gate == "gaussian":
            change["gate_clip"] = float(gate_clip)
        if pointwise_norm and layer.norm_in is not None:
            change["pointwise_norm"] = True
        if change:
            changes[id(layer)] = change
    if not changes:
        return model

    def clone(layer):
        return layer.__class__.from_config({**layer.get_config(), **changes.get(id(layer), {})})

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def _consumers(model):
    """id(layer) -> the layers that read its output (one entry per call)."""
    consumers = collections.defaultdict(list)
    for layer in model.layers:
        for node in layer._inbound_nodes:
            for tensor in node.input_tensors:
                consumers[id(tensor._keras_history.operation)].append(layer)
    return consumers


def _single_input(layer):
    """The layer that feeds ``layer``, if it is called once on one tensor; else None."""
    nodes = layer._inbound_nodes
    if len(nodes) != 1 or len(nodes[0].input_tensors) != 1:
        return None
    return nodes[0].input_tensors[0]._keras_history.operation


def _scalable_norm(norm):
    """A batch norm whose input may be scaled per channel (gamma absorbs the scale)."""
    return (isinstance(norm, keras.layers.BatchNormalization) and norm.scale
            and norm.axis in (-1, 3, [-1], [3]) and len(norm._inbound_nodes) == 1)


def _plain_conv(conv):
    return (type(conv) is keras.layers.Conv2D and conv.groups == 1
            and conv.activation is keras.activations.linear and len(conv._inbound_nodes) == 1)


def _equalisable_units(model):
    """``[(conv, unit, readers)]``: xUnits with a pre-norm fed by a plain ``Conv2D`` that
    nothing else reads, and the layers that read the unit (each a batch norm or a plain
    ``Conv2D``, else ``readers`` is None: the unit's output scale then stays as it is)."""
    consumers = _consumers(model)
    found = []
    for unit in model.layers:
        if (not isinstance(unit, XUnit) or unit.norm_in is None or not unit.norm_in.scale
                or len(unit._inbound_nodes) != 1):
            continue
        conv = _single_input(unit)
        if conv is None or not _plain_conv(conv) or consumers[id(conv)] != [unit]:
            continue
        readers = consumers[id(unit)]
        if not readers or not all(_scalable_norm(r) or _plain_conv(r) for r in readers):
            readers = None
        found.append((conv, unit, readers))
    return found


def equalise_scales(model, calibration, batch=16):
    """A copy of a functional ``model`` whose xUnits' per-channel scales are equalised on the
    ``calibration`` inputs (float-exact), or ``model`` itself if no xUnit qualifies.

    int8 graphs quantize each activation tensor with one scale, so a few channels of large range
    set the step for all the others; in a converged xDnCNN a conv output's channels span ranges
    from 0.2 to 157 and the xUnit's batch norm then multiplies the small ones by up to 8.5 (the
    official weights lose 6.7 dB).  Two positive per-channel scales per xUnit
    ``z * exp(-BN2(DW(ReLU(BN1(z))))^2)`` fed by a conv (``z = conv(h)``) leave every output
    unchanged:

    - ``a``: the conv's output channel ``c`` (kernel and bias) times ``a_c``; ``BN1`` divides
      it out (its moving mean times ``a_c``, gamma over ``a_c``), so the gate is the same and
      the unit's output is ``a_c`` times larger, which the layers reading it divide out: a
      batch norm as ``BN1`` does, a conv by its kernel's input channel ``c``.  ``a_c = G / m_c``
      with ``m_c = max |z_c|``: every channel of ``z`` and of the unit's output then spans the
      same range (``|z g| <= |z|``).
    - ``b``: ``BN1``'s output channel times ``b_c`` (gamma and beta), divided out by the
      depthwise kernel's channel (ReLU commutes with a positive scale): every channel of
      ``BN1``'s product ``s z`` and of the ReLU output ends within the same bound.

    A unit read by anything else (an add, the output) keeps ``a = 1``; shared layers (MemNet's
    recursions) are left alone.
    """
    units = _equalisable_units(model)
    if not units or not calibration:
        return model
    probe = keras.Model(model.inputs, [conv.output for conv, _, _ in units])
    peaks = [None] * len(units)         # per unit: max |z_c|, max |s_c z_c|, max ReLU(BN1(z))_c
    affine = [[ops.convert_to_numpy(v) for v in inference_affine(unit.norm_in)]
              for _, unit, _ in units]
    for start in range(0, len(calibration), batch):
        x = np.concatenate(calibration[start:start + batch])
        with warnings.catch_warnings():  # a bare array for the one named input
            warnings.simplefilter("ignore")
            outputs = probe(x, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        for i, z in enumerate(outputs):
            z = ops.convert_to_numpy(z).reshape(-1, z.shape[-1])
            scale, shift = affine[i]
            bn = scale * z + shift
            relu = np.maximum(bn, 0) if units[i][1].relu else np.abs(bn)
            stats = np.stack([np.abs(z).max(0), np.abs(scale * z).max(0), relu.max(0)])
            peaks[i] = stats if peaks[i] is None else np.maximum(peaks[i], stats)

    changes = collections.defaultdict(dict)   # id(layer) -> {"out": a, "in": 1/a, "bn": ...}
    for (conv, unit, readers), (z_peak, product_peak, relu_peak) in zip(units, peaks):
        a = _ratios(z_peak) if readers is not None else np.ones_like(z_peak)
        # after a, BN1's product and ReLU output are b * (s z) and b * ReLU(BN1(z)) as before
        b = _ratios(np.maximum(product_peak, relu_peak))
        changes[id(conv)]["out"] = a
        changes[id(unit)]["unit"] = (a, b)
        for reader in readers or ():
            changes[id(reader)]["in"] = changes[id(reader)].get("in", 1.0) / a

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for source, target in zip(model.layers, copy.layers):
        change = changes.get(id(source))
        if change:
            _rescale(target, **change)
    return copy


def _ratios(peak):
    """Positive per-channel factors that bring every channel's ``peak`` to their median
    (channels that are all but zero keep factor 1)."""
    typical = float(np.median(peak[peak > 0])) if np.any(peak > 0) else 1.0
    alive = peak > 1e-6 * typical
    return np.where(alive, typical / np.where(alive, peak, 1.0), 1.0).astype("float32")


def _rescale_norm(norm, into=1.0, out=1.0):
    """``norm`` reads ``into`` times its input per channel and writes ``out`` times its output."""
    norm.moving_mean.assign(ops.convert_to_numpy(norm.moving_mean) * into)
    norm.gamma.assign(ops.convert_to_numpy(norm.gamma) * out / into)
    if norm.center:
        norm.beta.assign(ops.convert_to_numpy(norm.beta) * out)


def _rescale(layer, out=None, unit=None, **kwargs):
    """Applies the :func:`equalise_scales` factors to one (copied) layer."""
    into = kwargs.get("in")
    if isinstance(layer, XUnit):
        a, b = unit
        _rescale_norm(layer.norm_in, into=a, out=b)
        kernel = ops.convert_to_numpy(layer.depthwise.kernel)
        layer.depthwise.kernel.assign(kernel / b[None, None, :, None])
    elif isinstance(layer, keras.layers.BatchNormalization):
        _rescale_norm(layer, into=1.0 / into)
    else:  # a plain Conv2D
        kernel = ops.convert_to_numpy(layer.kernel)
        if into is not None:
            kernel = kernel * np.asarray(into, "float32")[None, None, :, None]
        if out is not None:
            kernel = kernel * out
            if layer.use_bias:
                layer.bias.assign(ops.convert_to_numpy(layer.bias) * out)
        layer.kernel.assign(kernel)


def fold_batch_norms(model):
    """A copy of a functional ``model`` in which every inference batch norm whose only consumer
    is a stride-1 'same' ``Conv2D`` is folded into it (:class:`zoo.layers.FoldedNormConv`,
    exact at the borders too), or ``model`` itself if there is none.

    Used for int8 exports: there the converter quantizes the tensor in front of a batch norm's
    per-channel multiply on the multiply's output scale (a trained xDnCNN lost 3.2 dB to it;
    folded, 0.24 dB).  Float graphs keep the batch norm: its multiply-add (8 ms at 512x512x64)
    is cheaper than the border term's conv and add (16 ms).
    """
    consumers = _consumers(model)
    pairs = {}
    for layer in model.layers:
        users = consumers[id(layer)]
        if (isinstance(layer, keras.layers.BatchNormalization) and len(users) == 1
                and FoldedNormConv.folds(users[0])):
            pairs[id(users[0])] = layer
    if not pairs:
        return model
    folded = {id(norm) for norm in pairs.values()}

    def clone(layer):
        if id(layer) in folded:
            return keras.layers.Lambda(lambda h: h, name=layer.name)  # BN's call takes a mask
        if id(layer) in pairs:
            return FoldedNormConv.from_layers(pairs[id(layer)], layer)
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    for source, target in zip(model.layers, copy.layers):
        if id(source) not in folded and id(source) not in pairs:
            target.set_weights(source.get_weights())
    return copy


def norms_as_convs(model):
    """A copy of a functional ``model`` with every inference batch norm (outside xUnits) run as
    a 1x1 ``DepthwiseConv2D`` (kernel: its scale, bias: its shift; exact), or ``model`` itself
    if it has none.  An int8 graph then holds the per-channel scales as per-channel weights,
    where a multiply would share one 8-bit range among all channels' scales."""
    norms = {id(layer) for layer in model.layers
             if type(layer) is keras.layers.BatchNormalization}
    if not norms:
        return model

    def clone(layer):
        if id(layer) in norms:
            return keras.layers.DepthwiseConv2D(1, use_bias=True, name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    def call(layer, *args, **kwargs):
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kwargs.pop("mask", None)
            kwargs.pop("training", None)
        return layer(*args, **kwargs)

    copy = keras.models.clone_model(model, clone_function=clone, call_function=call)
    for source, target in zip(model.layers, copy.layers):
        if id(source) in norms:
            scale, shift = (ops.convert_to_numpy(v) for v in inference_affine(source))
            target.set_weights([scale.reshape(1, 1, -1, 1), shift])
        else:
            target.set_weights(source.get_weights())
    return copy


def _predict(model, image):
    return keras.ops.convert_to_numpy(model(image[None], training=False))[0].astype(np.float32)


def _upscale(model, channels):
    """Output/input size ratio (the scale of a sub-pixel SR model, 1 otherwise)."""
    return _predict(model, np.zeros((8, 8, channels), np.float32)).shape[0] // 8


def model_flops(model, height, width):
    """FLOPs of one ``height x width`` input: 2 x multiply-adds of every convolution and matmul.

    Counted on the traced TensorFlow graph, so shared layers count once per call (MemNet's
    recursions) and sub-pixel stages at their own resolution; biases, BN and activations are
    left out.  xDnCNN: 601,344 FLOP per pixel.
    """
    channels = model.inputs[0].shape[-1]
    function = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec((1, height, width, channels), tf.float32))
    total = 0
    for op in function.graph.get_operations():
        if op.type not in ("Conv2D", "DepthwiseConv2dNative", "MatMul", "BatchMatMulV2"):
            continue
        out = np.prod(op.outputs[0].shape.as_list(), dtype=np.int64)
        kernel = op.inputs[1].shape.as_list()
        if op.type == "Conv2D":
            per_output = kernel[0] * kernel[1] * kernel[2]
        elif op.type == "DepthwiseConv2dNative":
            per_output = kernel[0] * kernel[1]
        else:  # the contracted dimension of the first operand
            transposed = op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x")
            per_output = op.inputs[0].shape.as_list()[-2 if transposed else -1]
        total += 2 * int(out) * per_output
    return total


# --- conversion ----------------------------------------------------------------------------------

@dataclasses.dataclass
class GraphReport:
    """The operators of a .tflite file.

    Attributes:
        ops: op name -> count (builtin names, or the custom code of custom ops).
        flex_ops: the ops that need the Flex (SELECT_TF_OPS) delegate.
        custom_ops: other custom ops (need a custom op registration in the app).
        float_ops: ops reading or writing a float tensor; in a full-integer graph, the float
            islands (a DEQUANTIZE ... QUANTIZE stretch shows up as its ops and the two ends).
        int16_ops: ops reading or writing an int16 tensor (int16x8 activations).
    """

    ops: dict
    flex_ops: dict
    custom_ops: dict
    float_ops: dict
    int16_ops: dict = dataclasses.field(default_factory=dict)

    @property
    def builtin_only(self):
        return not self.flex_ops and not self.custom_ops


def inspect_graph(content):
    """A :class:`GraphReport` of the flatbuffer ``content``, read with LiteRT's schema."""
    model = schema.Model.GetRootAs(content, 0)
    ops, flex, custom, floating, int16 = (collections.Counter() for _ in range(5))
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            code = model.OperatorCodes(op.OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            if builtin == schema.BuiltinOperator.CUSTOM:
                name = code.CustomCode().decode()
                (flex if name.startswith("Flex") else custom)[name] += 1
            else:
                name = _OP_NAMES.get(builtin, f"BUILTIN_{builtin}")
            ops[name] += 1
            tensors = [op.Inputs(j) for j in range(op.InputsLength())]
            tensors += [op.Outputs(j) for j in range(op.OutputsLength())]
            types = {_TYPE_NAMES.get(graph.Tensors(t).Type()) for t in tensors if t >= 0}
            floating[name] += bool(types & _FLOAT_TYPES)
            int16[name] += "INT16" in types
    return GraphReport(*({k: v for k, v in sorted(c.items()) if v}
                         for c in (ops, flex, custom, floating, int16)))


def convert(model, mode="float32", *, input_shape=None, calibration=None, io_dtype="int8",
            allow_select_ops=False):
    """``(flatbuffer bytes, GraphReport)`` of a single-output Keras ``model`` in ``mode``.

    ``input_shape`` ``(H, W)`` fixes the input; ``None`` leaves height and width resizable
    (batch 1 either way).  ``calibration``: the float32 ``(1, H, W, C)`` inputs that calibrate
    an int8 model.  Ops outside LiteRT's builtin set raise a ``ValueError`` naming them unless
    ``allow_select_ops``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if io_dtype not in IO_DTYPES:
        raise ValueError(f"io_dtype must be one of {IO_DTYPES}, got {io_dtype!r}")
    channels = model.inputs[0].shape[-1]
    height, width = input_shape or (None, None)
    signature = tf.TensorSpec((1, height, width, channels), tf.float32)
    # Select TF ops are allowed in the conversion so that the ops needing them can be listed.
    supported = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    with tempfile.TemporaryDirectory(prefix="zoo-export-") as folder:
        model.export(folder, format="tf_saved_model", input_signature=[signature], verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        if mode != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if mode == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if mode in CALIBRATED:
            if not calibration:
                raise ValueError(f"an {mode} conversion needs calibration inputs")
            converter.representative_dataset = lambda: ([x] for x in calibration)
            # Builtin float kernels stay allowed so that a float island is reported, not fatal.
            supported.insert(0, tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if mode == "int8" else
                             tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8)
            io = tf.as_dtype(io_dtype) if mode == "int8" else tf.int16
            converter.inference_input_type = converter.inference_output_type = io
        converter.target_spec.supported_ops = supported
        content = converter.convert()
    report = inspect_graph(content)
    if report.flex_ops and not allow_select_ops:
        raise ValueError(f"{model.name} needs ops outside LiteRT's builtin set (Flex / "
                         f"SELECT_TF_OPS): {_counts(report.flex_ops)}; rewrite them with builtin "
                         "ops, or pass --allow-select-ops (the app must then link the Flex "
                         "delegate)")
    return content, report


def _counts(ops):
    return ", ".join(f"{name} x{count}" for name, count in ops.items())


def calibration_inputs(data, *, task, level, mode, upsampling="interpolated", ratio=1,
                       input_shape=None, samples=128, seed=0):
    """``samples`` degraded ``(1, H, W, C)`` patches from the task's training pipeline.

    ``input_shape`` is the model's fixed input (default: ``CALIBRATION_PATCH`` squares); the
    patches are cut as the training pipeline cuts them (sub-pixel pairs at the low resolution),
    from the images at least that large, or if there is none, at the largest size the images
    give and mirror-padded to the input.
    """
    height, width = input_shape or (CALIBRATION_PATCH, CALIBRATION_PATCH)
    images = named_images(data, mode)
    # a fixed input larger than every image gets patches of the largest size there is, mirrored;
    # super-resolution pairs are first cropped to a multiple of the scale
    multiple = int(level) if task == "sr" else 1
    sides = [min(image.shape[:2]) // multiple * multiple for _, image in images]
    patch = min(max(height, width) * ratio, max(sides) // ratio * ratio)
    images = [pair for pair, side in zip(images, sides) if side >= patch]
    dataset = training_dataset(images, task=task, levels=[level], patch_size=patch,
                               batch_size=1, mode=mode, upsampling=upsampling, seed=seed,
                               shuffle_buffer=max(int(samples), 1))
    return [_mirror_to(degraded.numpy(), height, width) for degraded, _ in dataset.take(samples)]


def _calibration_count(samples, shape):
    """Inputs to calibrate on: ``samples`` patches' worth of pixels, at least CALIBRATION_MIN
    inputs, for a fixed input larger than the patches (calibration runs LiteRT's reference
    kernels: a 512x512 xDnCNN with block xUnits takes ~15 s an input)."""
    if shape is None:
        return samples
    pixels = samples * CALIBRATION_PATCH ** 2
    return min(samples, max(CALIBRATION_MIN, -(-pixels // (shape[0] * shape[1]))))


def _mirror_to(batch, height, width):
    """``batch`` cropped, or mirror-padded, to ``height x width``."""
    pad_h, pad_w = max(height - batch.shape[1], 0), max(width - batch.shape[2], 0)
    if pad_h or pad_w:
        batch = np.pad(batch, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="symmetric")
    return batch[:, :height, :width]


# --- LiteRT --------------------------------------------------------------------------------------

class LiteRT:
    """A .tflite model on the LiteRT interpreter, called with a float ``HxWxC`` image.

    Quantized inputs and outputs are converted with the tensors' scale and zero point; a
    resizable model is resized to each image.  ``xnnpack=False`` runs LiteRT's builtin kernels
    (``OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES``); ``None`` takes the faster of the two
    as measured at export (the card beside a file), else ``DEFAULT_XNNPACK``.
    """

    def __init__(self, model, threads=2, xnnpack=None):
        if isinstance(model, (bytes, bytearray)):
            content = bytes(model)
        else:
            content = Path(model).read_bytes()
            xnnpack = card_runtime(model) if xnnpack is None else xnnpack
        self.xnnpack = DEFAULT_XNNPACK if xnnpack is None else bool(xnnpack)
        resolver = (OpResolverType.AUTO if self.xnnpack
                    else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.interpreter = Interpreter(model_content=content, num_threads=threads,
                                       experimental_op_resolver_type=resolver)
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.resizable = bool(np.any(self.input["shape_signature"][1:3] < 0))
        self.shape = None

    def prepare(self, height, width):
        """Sizes the input for ``height x width`` (a fixed model accepts its own size only)."""
        if self.shape == (height, width):
            return
        fixed = tuple(int(d) for d in self.input["shape"][1:3])
        if not self.resizable and fixed != (height, width):
            raise ValueError(f"this model takes {fixed[0]}x{fixed[1]} inputs only, "
                             f"got {height}x{width}")
        channels = int(self.input["shape"][3])
        self.interpreter.resize_tensor_input(self.input["index"], [1, height, width, channels])
        self.interpreter.allocate_tensors()
        self.shape = (height, width)

    def __call__(self, image):
        image = np.asarray(image, np.float32)
        self.prepare(*image.shape[:2])
        self.interpreter.set_tensor(self.input["index"], _quantize(image[None], self.input))
        self.interpreter.invoke()
        return _dequantize(self.interpreter.get_tensor(self.output["index"]), self.output)[0]

    def set_random_input(self, seed=0):
        height, width = self.shape
        x = np.random.default_rng(seed).random((1, height, width, int(self.input["shape"][3])))
        self.interpreter.set_tensor(self.input["index"],
                                    _quantize(x.astype(np.float32), self.input))

    def invoke(self):
        self.interpreter.invoke()


def _quantize(x, details):
    scale, zero_point = details["quantization"]
    dtype = details["dtype"]
    if not np.issubdtype(dtype, np.integer):
        return x.astype(dtype)
    limits = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), limits.min, limits.max).astype(dtype)


def _dequantize(q, details):
    scale, zero_point = details["quantization"]
    if not np.issubdtype(q.dtype, np.integer):
        return q.astype(np.float32)
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)


def _tensor_spec(details, meaning):
    scale, zero_point = details["quantization"]
    return {"name": details["name"], "dtype": np.dtype(details["dtype"]).name,
            "shape": [int(d) for d in details["shape_signature"]],
            "quantization": {"scale": float(scale), "zero_point": int(zero_point),
                             "real_value": "scale * (q - zero_point)"} if scale else None,
            "meaning": meaning}


# --- validation and latency ----------------------------------------------------------------------

def compare(runner, model, pairs, task, level):
    """Restores each ``(name, degraded, clean)`` pair with the .tflite and Keras: per-image rows."""
    rows = []
    for name, degraded, clean in pairs:
        reference = _predict(model, degraded)
        lite = runner(degraded)
        keras_metrics = protocol_metrics(np.clip(reference, 0, 1), clean, task, level)
        lite_metrics = protocol_metrics(np.clip(lite, 0, 1), clean, task, level)
        row = {"image": name, "input_size": list(degraded.shape[:2]),
               "max_abs_diff": float(np.abs(lite - reference).max()),
               "psnr_tflite_vs_keras": psnr(lite, reference, data_range=1.0),
               "keras": keras_metrics, "tflite": lite_metrics}
        if degraded.shape == clean.shape:
            row["degraded"] = protocol_metrics(degraded, clean, task, level)
        rows.append(row)
    return rows


def summarise(rows):
    """Means over images (the worst image for TFLite vs Keras) and the quantization drop."""
    mean = lambda key, metric: float(np.mean([r[key][metric] for r in rows]))
    summary = {"images": len(rows),
               "max_abs_diff_vs_keras": max(r["max_abs_diff"] for r in rows),
               "worst_psnr_tflite_vs_keras": min(r["psnr_tflite_vs_keras"] for r in rows)}
    for key in ("keras", "tflite", "degraded"):
        if all(key in r for r in rows):
            summary[key] = {"psnr": mean(key, "psnr"), "ssim": mean(key, "ssim")}
    summary["quantization_drop_db"] = summary["keras"]["psnr"] - summary["tflite"]["psnr"]
    return summary


def _crop_pairs(pairs, input_shape, ratio):
    """Centre crops of the pairs at a fixed input size (the clean crop ``ratio`` times larger)."""
    height, width = input_shape
    cropped = []
    for name, degraded, clean in pairs:
        top, left = (degraded.shape[0] - height) // 2, (degraded.shape[1] - width) // 2
        if top < 0 or left < 0:
            continue
        cropped.append((name, degraded[top:top + height, left:left + width],
                        clean[top * ratio:(top + height) * ratio,
                              left * ratio:(left + width) * ratio]))
    if not cropped:
        raise ValueError(f"no validation image is at least {height}x{width} (the input shape)")
    return cropped


def check_resizable(content, model, sizes=RESIZE_PROBE, image=None):
    """Runs a resizable .tflite at each ``(H, W)`` of ``sizes`` and compares it with Keras.

    The inputs are top-left crops of ``image`` (a degraded ``HxWxC`` input, so that an int8
    file sees what it was calibrated for) where it is large enough, else uniform noise.
    ``works``: it ran, the output has the Keras shape, is finite and agrees with Keras to
    ``AGREES_DB`` dB PSNR.
    """
    runner = LiteRT(content)
    if not runner.resizable:
        return {"works": False, "error": "the input shape is fixed"}
    channels = int(runner.input["shape"][3])
    rng = np.random.default_rng(0)
    result = {"sizes": [list(s) for s in sizes], "psnr_vs_keras": [], "max_abs_diff": 0.0}
    try:
        for height, width in sizes:
            if image is not None and min(image.shape[0] - height, image.shape[1] - width) >= 0:
                x = np.asarray(image[:height, :width], np.float32)
            else:
                x = rng.random((height, width, channels), dtype=np.float32)
            lite, reference = runner(x), _predict(model, x)
            if lite.shape != reference.shape:
                raise ValueError(f"output {lite.shape} where Keras gives {reference.shape}")
            result["psnr_vs_keras"].append(psnr(lite, reference, data_range=1.0))
            result["max_abs_diff"] = max(result["max_abs_diff"],
                                         float(np.abs(lite - reference).max()))
    except (RuntimeError, ValueError) as error:
        return {"works": False, **result, "error": describe_error(error)}
    result["works"] = bool(np.isfinite(result["max_abs_diff"])
                           and min(result["psnr_vs_keras"]) >= AGREES_DB)
    return {"works": result.pop("works"), **result}


def measure_latency(content, sizes, threads=LATENCY_THREADS, runs=5, flops=None):
    """Median ``invoke()`` time of every (size, threads, XNNPACK on/off), after one warm-up run.

    A builtin-kernel setting whose warm-up run takes ``SLOW_BUILTIN`` times XNNPACK's median
    or more is recorded from that one run (xDnCNN with block xUnits on the reference kernels:
    8 s a run at 512x512).  ``flops``: a function ``(H, W) -> FLOPs`` to add the achieved GFLOP/s.
    """
    rows = []
    for height, width in sizes:
        work = flops(height, width) if flops else None
        for count in threads:
            xnnpack_median = None
            for xnnpack in (True, False):
                runner = LiteRT(content, threads=count, xnnpack=xnnpack)
                runner.prepare(height, width)
                runner.set_random_input()
                start = time.perf_counter()
                runner.invoke()
                times = [time.perf_counter() - start]
                if xnnpack or times[0] < SLOW_BUILTIN * xnnpack_median:
                    times = []
                    for _ in range(max(int(runs), 1)):
                        start = time.perf_counter()
                        runner.invoke()
                        times.append(time.perf_counter() - start)
                median = float(np.median(times))
                xnnpack_median = median if xnnpack else xnnpack_median
                row = {"input_size": [height, width], "threads": count, "xnnpack": xnnpack,
                       "median_ms": round(median * 1000, 2), "min_ms": round(min(times) * 1000, 2),
                       "runs": len(times)}
                if work:
                    row["gflops_per_s"] = round(work / median / 1e9, 2)
                rows.append(row)
    return rows


def fastest_runtime(rows):
    """The delegate choice that is faster at the largest size measured with the most threads."""
    largest = max(r["input_size"][0] * r["input_size"][1] for r in rows)
    threads = max(r["threads"] for r in rows)
    pair = {r["xnnpack"]: r["median_ms"] for r in rows
            if r["threads"] == threads and r["input_size"][0] * r["input_size"][1] == largest}
    xnnpack = pair[True] < pair[False]
    slower, faster = (pair[False], pair[True]) if xnnpack else (pair[True], pair[False])
    return {"xnnpack": xnnpack, "threads": threads,
            "why": f"{'XNNPACK' if xnnpack else 'builtin kernels'} {slower / faster:.2f}x faster "
                   f"than {'builtin kernels' if xnnpack else 'XNNPACK'} at the largest size "
                   f"measured, {threads} thread(s)"}


def gpu_delegate(content, graph=None):
    """Whether LiteRT's GPU delegate takes the whole graph: ``{compatible, unsupported_ops,
    analyzer}``.

    Two static checks must agree: every op is in the delegate's documented op table
    (``GPU_DELEGATE_OPS``) with float or int8 tensors (the delegate has no int16 kernels), and
    ``tf.lite.experimental.Analyzer`` with ``gpu_compatibility=True`` finds nothing (alone it
    passes graphs with TOPK_V2 or CUMSUM, which the delegate does not run).
    """
    graph = graph or inspect_graph(content)
    unsupported = [f"{name} x{count}" for name, count in graph.ops.items()
                   if name not in GPU_DELEGATE_OPS]
    if graph.int16_ops:
        unsupported.append(f"int16 tensors in {_counts(graph.int16_ops)}")
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        tf.lite.experimental.Analyzer.analyze(model_content=content, gpu_compatibility=True)
    analyzer = [line.strip() for line in text.getvalue().splitlines()
                if "GPU" in line and line.strip()]
    analyzer_passes = any("looks compatible with GPU delegate" in line for line in analyzer)
    return {"compatible": not unsupported and analyzer_passes, "unsupported_ops": unsupported,
            "analyzer": analyzer}


# --- quantization-aware fine-tuning ---------------------------------------------------------------

def fine_tune_quantized(model, calibration, data, *, task, level, mode, upsampling="interpolated",
                        ratio=1, steps=QAT_STEPS, learning_rate=QAT_LEARNING_RATE,
                        patch=QAT_PATCH, batch=QAT_BATCH, seed=0):
    """``(simulated model, card)``: :func:`zoo.qat.quantization_model` of an export-ready
    ``model``, its ranges calibrated on ``calibration``, fine-tuned ``steps`` steps to reproduce
    ``model`` on degraded ``patch``-square patches of ``data`` (the task's pipeline)."""
    simulated = qat.calibrate(qat.quantization_model(model), calibration)
    dataset = training_dataset(data, task=task, levels=[level], patch_size=patch * ratio,
                               batch_size=batch, mode=mode, upsampling=upsampling, seed=seed)
    start = time.perf_counter()
    history = qat.fine_tune(simulated, model, dataset, steps, learning_rate)
    seconds = time.perf_counter() - start
    return simulated, {"steps": int(steps), "learning_rate": learning_rate, "batch": batch,
                       "patch": patch * ratio, "loss": "MSE to the float model's output",
                       "final_loss": float(history.history["loss"][-1]),
                       "seconds": round(seconds, 1), "fake_quant_layers": len(qat.fake_quants(simulated))}


def simulated_agreement(simulated, runner, pairs, task, level):
    """How well the fake-quantized Keras model predicts the int8 file: PSNR of one against the
    other (the worst image) and the mean protocol PSNR of the simulation."""
    versus, scores = [], []
    for _, degraded, clean in pairs:
        predicted = _predict(simulated, degraded)
        versus.append(psnr(runner(degraded), predicted, data_range=1.0))
        scores.append(protocol_metrics(np.clip(predicted, 0, 1), clean, task, level)["psnr"])
    return {"worst_psnr_vs_tflite": float(min(versus)), "psnr": float(np.mean(scores))}


# --- export --------------------------------------------------------------------------------------

def _task_and_level(info, task, level, ratio):
    task = task or next((t for t in info.tasks if t in PIPELINE_TASKS), "denoise")
    if task not in PIPELINE_TASKS:
        raise ValueError(f"task must be one of {', '.join(PIPELINE_TASKS)}, got {task!r}")
    if level is None:
        level = ratio if ratio > 1 else DEFAULT_LEVELS[task]
    level = check_levels(task, level)[0]
    if ratio > 1 and (task != "sr" or level != ratio):
        raise ValueError(f"{info.name} is a x{ratio} sub-pixel SR model: use task 'sr' "
                         f"with level {ratio}")
    return task, level


def _check_out(out):
    out = Path(out)
    if out.suffix != ".tflite":
        raise ValueError(f"the output file must end in .tflite, got {str(out)!r}")
    return out


def card_path(out):
    """``<name>.card.yaml`` beside ``<name>.tflite``."""
    out = Path(out)
    return out.with_name(out.stem + ".card.yaml")


def card_runtime(tflite):
    """Whether XNNPACK was the faster CPU runtime for ``tflite`` as its card records it (the
    ``latency.default_runtime`` block this module writes); None if unknown."""
    path = card_path(tflite)
    if not path.is_file():
        return None
    found = re.search(r"^  default_runtime:\n    xnnpack: (true|false)$", path.read_text(),
                      re.MULTILINE)
    return None if found is None else found.group(1) == "true"


def _resizable_check(content, model, fixed, image=None):
    """:func:`check_resizable` of the file, or for a fixed-shape export, of a float32 resizable
    conversion of the same model (does the model work resizable at all?)."""
    if not fixed:
        return check_resizable(content, model, image=image)
    try:
        probe, _ = convert(model, "float32")
    except ValueError as error:
        return {"exported": False, "float32_probe": {"works": False, "error": describe_error(error)}}
    return {"exported": False,
            "float32_probe": {**check_resizable(probe, model), "file_bytes": len(probe)}}


def _rounded(value, digits=6):
    """``value`` with every float rounded to ``digits`` significant digits (for the card)."""
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v, digits) for v in value]
    if isinstance(value, float) and np.isfinite(value) and value != 0:
        return round(value, digits - 1 - int(np.floor(np.log10(abs(value)))))
    return value


def export(model, out, *, mode="float32", weights=None, overrides=None, task=None, level=None,
           input_shape=None, io_dtype="int8", calibration_data=None, calibration_samples=128,
           val_data=None, val_limit=0, allow_select_ops=False, latency_sizes=LATENCY_SIZES,
           latency_threads=LATENCY_THREADS, latency_runs=5, gate_clip=GATE_CLIP,
           xunit_split=None, xunit_block=None, qat_steps=0, qat_learning_rate=QAT_LEARNING_RATE,
           seed=0):
    """Exports a zoo model to ``out`` (a .tflite), validates it on LiteRT and writes its card.

    Args:
        model: registry name, or a built ``keras.Model``.
        out: the ``.tflite`` path; the card goes to ``<name>.card.yaml`` beside it.
        mode: ``"float32"``, ``"float16"``, ``"dynamic"``, ``"int8"`` or ``"int16x8"``.
        weights: ``.weights.h5`` (with the builder ``overrides``) or ``.keras``; None keeps the
            untrained initial weights.
        task, level: what the model restores (default: its first task, sigma 25 / x3 / q10; a
            sub-pixel model's scale) and so how validation and calibration degrade images.
        input_shape: ``(H, W)`` for a fixed input; None: resizable.
        io_dtype: ``"int8"`` or ``"uint8"``, the input/output type of an int8 model.
        calibration_data, val_data: folder(s) or ``[(name, image)]``; default: the built-in
            demo images (training split for calibration, the held-out two for validation).
        calibration_samples: int8 calibration patches (of CALIBRATION_PATCH squares: a larger
            fixed input gets as many pixels in fewer inputs, at least CALIBRATION_MIN).
        val_limit: validate on the first N images only (0: all).
        allow_select_ops: accept ops that need the Flex delegate (the file is then not
            validated: the Python LiteRT runtime has no Flex delegate).
        latency_sizes: square input sides to time (a fixed model is timed at its own size);
            empty to skip.  latency_threads, latency_runs: threads and timed runs per setting.
        gate_clip: in int8 mode, xUnit gates read ``clip(d, -gate_clip, gate_clip)``
            (:func:`xunit_options`); None or 0: as trained.
        xunit_split: xUnit depthwise convs run as sums of pieces of at most ``xunit_split`` x
            ``xunit_split`` taps (:func:`xunit_options`); 0: whole; None: ``XUNIT_SPLIT[mode]``.
            int8 exports also fold batch norms that precede convs (:func:`fold_batch_norms`).
        xunit_block: xUnit depthwise convs run as grouped convs on ``xunit_block`` square pixel
            blocks instead (:func:`xunit_options`); 0: not; None: ``XUNIT_BLOCK`` for int8
            with a fixed ``input_shape``, else 0.
        qat_steps: int8 only: fine-tune this many steps with int8 rounding simulated
            (:mod:`zoo.qat`) on the calibration images before converting (0: post-training
            quantization only); xUnits then keep the split form.  qat_learning_rate: its Adam
            step size.

    Returns the card (a dict), also written as YAML.
    """
    out = _check_out(out)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    keras_model, info = load_model(model, weights, overrides)
    keras_model = inference_model(keras_model)
    channels = keras_model.inputs[0].shape[-1]
    ratio = _upscale(keras_model, channels)
    task, level = _task_and_level(info, task, level, ratio)
    colour = input_mode(info, task)
    upsampling = "sub-pixel" if ratio > 1 else "interpolated"
    shape = tuple(int(s) for s in input_shape) if input_shape else None
    if shape is not None and (len(shape) != 2 or min(shape) < 1):
        raise ValueError(f"input_shape is (H, W) with positive sides, got {input_shape!r}")
    if qat_steps and mode != "int8":
        raise ValueError(f"quantization-aware fine-tuning (qat_steps) is for int8 exports, "
                         f"not {mode}")
    if qat_steps and xunit_block:
        raise ValueError("quantization-aware fine-tuning keeps xUnits in the split form: "
                         "leave xunit_block unset")

    calibration = None
    if mode in CALIBRATED:
        calibration = calibration_inputs(
            calibration_data or demo_images(colour, split="train"), task=task, level=level,
            mode=colour, upsampling=upsampling, ratio=ratio, input_shape=shape,
            samples=_calibration_count(calibration_samples, shape), seed=seed)
    notes = []
    gate_clip = gate_clip if mode in CALIBRATED else None
    xunit_split = XUNIT_SPLIT.get(mode) if xunit_split is None else xunit_split
    if xunit_block is None:
        xunit_block = XUNIT_BLOCK if mode == "int8" and shape and not qat_steps else 0
    source = equalise_scales(keras_model, calibration) if mode in CALIBRATED else keras_model
    converted = xunit_options(source, gate_clip=gate_clip, split=xunit_split,
                              block=xunit_block)
    applied = _xunit_applied(converted) if converted is not keras_model else {}
    notes += _xunit_notes(applied)
    if source is not keras_model:
        count = len(_equalisable_units(keras_model))
        applied["equalised_xunits"] = count
        notes.append(f"{count} xUnit(s) with per-channel scales equalised on the calibration "
                     "inputs (exact: the batch norms and convs around them divide them out)")
    # int8 only: int16 activations quantize the tensor before a batch norm finely enough, and
    # folding a batch norm's per-channel scales into a kernel coarsens its per-channel int8 grid
    # (the authors' xDnCNN: 0.33 dB from weights alone with folding, 0.03 dB without)
    folded = fold_batch_norms(converted) if mode == "int8" else converted
    if folded is not converted:
        count = sum(isinstance(layer, FoldedNormConv) for layer in folded.layers)
        applied["folded_batch_norms"] = count
        notes.append(f"{count} batch norm(s) before convs folded into them (exact, borders "
                     "included)")
        converted = folded
    if mode == "float16":     # the GPU delegate's mode: keep the graph in its op table
        rewritten = gpu_rewrite(converted)
        if rewritten is not converted:
            count = sum(isinstance(layer, TransposedConvShuffle) for layer in rewritten.layers)
            applied["transposed_conv_shuffles"] = count
            notes.append(f"{count} pixel shuffle(s) run as transposed convs with one-hot kernels "
                         "(exact), for the GPU delegate, which has no DEPTH_TO_SPACE")
            converted = rewritten
    simulated, qat_card = None, None
    if qat_steps:
        data = calibration_data or demo_images(colour, split="train")
        simulated, qat_card = fine_tune_quantized(
            converted, calibration, data, task=task, level=level, mode=colour,
            upsampling=upsampling, ratio=ratio, steps=qat_steps,
            learning_rate=qat_learning_rate, seed=seed)
        qat_card["data"] = _describe_data(calibration_data,
                                          "built-in demo images (training split)")
        notes.append(f"quantization-aware fine-tuning: {qat_steps} steps in "
                     f"{qat_card['seconds']:.0f} s; activation ranges and weights from it "
                     "(the converter reads its FakeQuant ranges)")
        converted = simulated
    content, graph = convert(converted, mode, input_shape=shape, calibration=calibration,
                             io_dtype=io_dtype, allow_select_ops=allow_select_ops)
    if mode in CALIBRATED and graph.float_ops:
        notes.append(f"float ops remain in the {mode} graph: {_counts(graph.float_ops)}")
    if mode == "int16x8":
        notes.append("int16x8 runs on LiteRT's reference kernels only (XNNPACK and the GPU "
                     "delegate do not take int16 activations)")

    numerics, resizable, latency = {"validated": False}, {"works": None}, []
    if graph.flex_ops:
        notes.append("not validated: the Python LiteRT runtime cannot run Flex ops")
    else:
        if latency_sizes:
            sizes = [shape] if shape else [(s, s) for s in latency_sizes]
            latency = measure_latency(content, sizes, latency_threads, latency_runs,
                                      flops=lambda h, w: model_flops(keras_model, h, w))
        runtime = fastest_runtime(latency)["xnnpack"] if latency else DEFAULT_XNNPACK
        pairs = evaluation_pairs(val_data or demo_images(colour, split="val"), task, level,
                                 mode=colour, upsampling=upsampling, seed=seed)
        pairs = pairs[: val_limit or None]
        if shape:
            cropped = _crop_pairs(pairs, shape, ratio)
            if len(cropped) < len(pairs):
                notes.append(f"validated on {len(cropped)} of {len(pairs)} images: the others "
                             f"are smaller than the {shape[0]}x{shape[1]} input")
            pairs = cropped
        rows = compare(LiteRT(content, xnnpack=runtime), keras_model, pairs, task, level)
        numerics = {"validated": True, "xnnpack": runtime, **summarise(rows), "per_image": rows}
        if simulated is not None:
            numerics["fake_quant"] = simulated_agreement(simulated, LiteRT(content, xnnpack=runtime),
                                                         pairs, task, level)
        resizable = _resizable_check(content, keras_model, fixed=shape is not None,
                                     image=pairs[0][1])
    lite = LiteRT(content)

    card = {
        "model": info.name,
        "paper": info.paper,
        "task": task,
        "level": level,
        "mode": mode,
        "file": {"name": out.name, "size_bytes": len(content),
                 "size_mb": round(len(content) / 2**20, 3)},
        "weights": str(weights) if weights is not None else None,
        "overrides": dict(overrides or {}),
        "export_options": applied,
        "parameters": {c: count_params(keras_model, c) for c in ("paper", "kernels", "keras")},
        "flops": {"per_input_pixel": model_flops(keras_model, 64, 64) / 64**2,
                  "counted_at": [64, 64], "rule": "2 x multiply-adds of convolutions and matmuls"},
        "input": _tensor_spec(lite.input, _meaning(colour, task, level, ratio, "input")),
        "output": _tensor_spec(lite.output, _meaning(colour, task, level, ratio, "output")),
        "resizable": _rounded(resizable),
        "graph": {"builtin_only": graph.builtin_only, "ops": graph.ops,
                  "flex_ops": graph.flex_ops, "custom_ops": graph.custom_ops},
        "numerics": _rounded(numerics),
        "latency": {"unit": "ms after one warm-up run", "results": latency,
                    "default_runtime": fastest_runtime(latency) if latency else None},
        "gpu_delegate": gpu_delegate(content, graph),
        "notes": notes,
        "machine": machine(),
    }
    if qat_card is not None:
        card["quantization_aware"] = qat_card
    if mode in CALIBRATED:
        card["graph"]["float_ops"] = graph.float_ops
        card["calibration"] = {
            "samples": len(calibration), "patch": list(calibration[0].shape[1:3]),
            "data": _describe_data(calibration_data, "built-in demo images (training split)")}

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_bytes(content)
        write_card(card_path(out), card)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return card


def _xunit_applied(model):
    """The export-time xUnit options a converted model carries (see :func:`xunit_options`)."""
    units = [layer for layer in model.layers if isinstance(layer, XUnit)]
    applied = {}
    for option in ("split", "block", "gate_clip"):
        values = {getattr(unit, option) for unit in units} - {None}
        if values:
            applied["xunit_" + option] = values.pop()
    return applied


def _xunit_notes(applied):
    notes = []
    if "xunit_split" in applied:
        s = applied["xunit_split"]
        notes.append(f"xUnit depthwise convs run as sums of depthwise convs of at most {s}x{s} "
                     "taps (exact up to float rounding), for XNNPACK")
    if "xunit_block" in applied:
        b = applied["xunit_block"]
        notes.append(f"xUnit depthwise convs run as grouped convs on {b}x{b} pixel blocks "
                     "(exact up to float rounding), for XNNPACK's int8 GEMM kernels")
    if "xunit_gate_clip" in applied:
        b = applied["xunit_gate_clip"]
        notes.append(f"xUnit gates read clip(d, -{b:g}, {b:g}) in this quantized graph: a "
                     f"gate changes by at most exp(-{b * b:g}) = {np.exp(-b * b):.1e}, below "
                     "int8 resolution, and d*(-d) gets finer quantization steps")
    return notes


def _meaning(colour, task, level, ratio, which):
    kind = {"gray": "gray", "Y": "luma (Y of BT.601)", "RGB": "RGB"}[colour]
    if which == "input":
        degraded = {"denoise": f"noisy (sigma {level}/255, values may leave [0, 1])",
                    "sr": (f"low-resolution (x{ratio} smaller)" if ratio > 1
                           else f"bicubic-upsampled x{level}"),
                    "jpeg": f"JPEG-compressed (quality {level})"}[task]
        return f"{degraded} {kind} image, float values in [0, 1] scale, NHWC, batch 1"
    size = f"{ratio}x the input size" if ratio > 1 else "the input size"
    return f"restored {kind} image at {size}, [0, 1] scale (clip before display)"


def _describe_data(data, default):
    if data is None:
        return default
    if isinstance(data, (str, os.PathLike)):
        return str(data)
    return [name if isinstance(name, str) else str(name[0]) for name in data]
