"""Export-time graph rewrites, each exact in float: xUnit export options (split, block, gate clip,
pointwise norm), per-channel scale equalisation around xUnits and batch norms as 1x1 depthwise
convs; :func:`integer_form` chains them as an integer export does.  They rebuild the
functional model (``keras.models.clone_model``) and copy the weights; the paper layers stay as
the papers define them.
"""

import collections
import warnings

import keras
import numpy as np
from keras import ops

from zoo.export.layers import ExportXUnit
from zoo.export.settings import GATE_CLIP, XUNIT_SPLIT
from zoo.layers import XUnit
from zoo.layers.normalization import inference_affine


def xunit_options(model, gate_clip=None, split=None, block=None, pointwise_norm=False):
    """A copy of a functional ``model`` whose xUnits become :class:`ExportXUnit` with these
    options (same weights), or ``model`` itself if nothing changes.

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
        if id(layer) not in changes:
            return layer.__class__.from_config(layer.get_config())
        return ExportXUnit.from_config({**layer.get_config(), **changes[id(layer)]})

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def readers(model):
    """Layer name -> the layers that read its output (one entry per call); a functional model's
    graph as the rewrites and :mod:`zoo.export.qat` walk it."""
    found = collections.defaultdict(list)
    for layer in model.layers:
        for node in layer._inbound_nodes:
            for tensor in node.input_tensors:
                found[tensor._keras_history.operation.name].append(layer)
    return found


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


def equalisable_units(model):
    """``[(conv, unit, readers)]``: xUnits with a pre-norm fed by a plain ``Conv2D`` that
    nothing else reads, and the layers that read the unit (each a batch norm or a plain
    ``Conv2D``, else ``readers`` is None: the unit's output scale then stays as it is)."""
    consumers = readers(model)
    found = []
    for unit in model.layers:
        if (not isinstance(unit, XUnit) or unit.norm_in is None or not unit.norm_in.scale
                or len(unit._inbound_nodes) != 1):
            continue
        conv = _single_input(unit)
        if conv is None or not _plain_conv(conv) or consumers[conv.name] != [unit]:
            continue
        unit_readers = consumers[unit.name]
        if not unit_readers or not all(_scalable_norm(r) or _plain_conv(r) for r in unit_readers):
            unit_readers = None
        found.append((conv, unit, unit_readers))
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
    units = equalisable_units(model)
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
            outputs = probe.predict_on_batch(x)     # compiled: ~2x an eager call on a CPU
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        for i, z in enumerate(outputs):
            z = np.asarray(z).reshape(-1, z.shape[-1])
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


def norms_as_convs(model):
    """A copy of a functional ``model`` whose inference batch norms are gone, or ``model``
    itself if there is none: one right after a linear conv is folded into it (kernel times
    its scale per output channel, bias times its scale plus its shift; exact), every other
    runs as a 1x1 ``DepthwiseConv2D`` (kernel: its scale, bias: its shift; exact).

    Used for int8 exports, with the xUnits' own ``BN1`` as 1x1 convs too
    (``xunit_options(pointwise_norm=True)``): an int8 graph then holds the per-channel scales
    as per-channel weights, where a multiply shares one 8-bit range among all channels' scales,
    and folding the scales into the conv after the batch norm coarsens that conv's per-channel
    weight grid (the authors' xDnCNN σ25: weights and constants cost 0.48 dB folded, 0.03 dB
    as 1x1 convs).  The fold into the conv before is what the converter does anyway; done
    here, the quantization-aware simulation (:mod:`zoo.export.qat`) rounds the kernel the
    file holds.
    """
    consumers = readers(model)

    def after_conv(norm):
        source = _single_input(norm)
        return (type(source) in (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
                and source.activation is keras.activations.linear
                and consumers[source.name] == [norm])

    norms = [layer for layer in model.layers if type(layer) is keras.layers.BatchNormalization]
    if not norms:
        return model
    folded = {id(_single_input(norm)): norm for norm in norms if after_conv(norm)}
    removed = {norm.name for norm in folded.values()}
    pointwise = {id(norm) for norm in norms if norm.name not in removed}

    def clone(layer):
        if id(layer) in pointwise:
            return keras.layers.DepthwiseConv2D(1, use_bias=True, name=layer.name)
        if id(layer) in folded:
            return layer.__class__.from_config({**layer.get_config(), "use_bias": True})
        return layer.__class__.from_config(layer.get_config())

    def call(layer, *args, **kwargs):
        if layer.name in removed:
            return args[0]
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kwargs.pop("mask", None)
            kwargs.pop("training", None)
        return layer(*args, **kwargs)

    copy = keras.models.clone_model(model, clone_function=clone, call_function=call)
    for source in model.layers:
        if source.name in removed or not source.weights:
            continue
        target = copy.get_layer(source.name)
        if id(source) in pointwise:
            scale, shift = (ops.convert_to_numpy(v) for v in inference_affine(source))
            target.set_weights([scale.reshape(1, 1, -1, 1), shift])
        elif id(source) in folded:
            scale, shift = (ops.convert_to_numpy(v) for v in inference_affine(folded[id(source)]))
            kernel = ops.convert_to_numpy(source.kernel)
            bias = ops.convert_to_numpy(source.bias) if source.use_bias else np.zeros_like(shift)
            # the output channels are the kernel's last axis (a depthwise conv's last two)
            target.set_weights([kernel * scale.reshape(kernel.shape[-2:] if type(source) is
                                                       keras.layers.DepthwiseConv2D else -1),
                                bias * scale + shift])
        else:
            target.set_weights(source.get_weights())
    return copy


def integer_form(model, calibration, mode="int8", gate_clip=GATE_CLIP, split=None, block=0):
    """The copy of a functional ``model`` that an integer export (``mode`` "int8" or "int16x8")
    converts and ``--qat`` fine-tunes, each step exact in float: xUnit scales equalised on the
    ``calibration`` inputs (:func:`equalise_scales`), the xUnit options (:func:`xunit_options`;
    ``split`` None: ``XUNIT_SPLIT[mode]``) and, for int8, every batch norm as a 1x1 depthwise
    conv or folded into the conv before it (:func:`norms_as_convs`, each xUnit's ``BN1`` too)."""
    split = XUNIT_SPLIT[mode] if split is None else split
    form = xunit_options(equalise_scales(model, calibration), gate_clip=gate_clip, split=split,
                         block=block, pointwise_norm=mode == "int8")
    return norms_as_convs(form) if mode == "int8" else form


def xunit_applied(model):
    """The export-time xUnit options a converted model carries (see :func:`xunit_options`)."""
    units = [layer for layer in model.layers if isinstance(layer, XUnit)]
    applied = {}
    for option in ("split", "block", "gate_clip"):
        values = {getattr(unit, option, None) for unit in units} - {None}
        if values:
            applied["xunit_" + option] = values.pop()
    return applied


def xunit_notes(applied):
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
