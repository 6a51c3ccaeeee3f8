"""Quantization-aware fine-tuning for int8 LiteRT exports (Jacob et al., CVPR 2018, §3).

An int8 graph rounds every activation tensor to 256 levels of one range and every conv kernel
to 255 symmetric levels per output channel.  :func:`quantization_model` rebuilds an export-ready
Keras model (:func:`zoo.export.rewrites.integer_form`: xUnits split or on pixel blocks, batch
norms as 1x1 convs) with ``keras.quantizers.fake_quant_with_min_max_vars`` at exactly those
tensors:

- weights: ``q(W) = fq(W, -m_c, m_c)`` per output channel, ``m_c = max |W_c|``, 255 levels;
- activations: ``q(x) = fq(x, lo, hi)`` per tensor, after each op the converter keeps (a conv
  with its fused ReLU, each batch-norm multiply and add, each piece and partial sum of a split
  xUnit conv, the gate's ``-d``, ``d * -d`` and ``exp``, the product ``z g``, the input).

Ranges start at the min/max over calibration inputs of the float model (what post-training
calibration measures).  Rounding passes gradients straight through inside the range
(``FakeQuantWithMinMaxVars``), so :func:`fine_tune` (``model.fit``) adapts the weights to the
rounding, and learns the ranges (LSQ's gradient): a min/max range spends its 256 levels on rare
extremes, e.g. partial sums of an xUnit conv over +-25 when its gate reads +-3.  On
TensorFlow the ops are ``FakeQuant`` nodes: the TFLite converter reads their ranges, so the
fine-tuned graph converts to the same int8 ops as a post-training one, and the Keras model
predicts the int8 file's outputs.
"""

import keras
import numpy as np
from keras import ops
from keras.quantizers import fake_quant_with_min_max_vars

from zoo.export.layers import ExportXUnit
from zoo.layers import XUnit
from zoo.layers.normalization import inference_affine
from zoo.export.rewrites import readers

__all__ = ["FakeQuant", "quantization_model", "calibrate", "fine_tune", "Distillation",
           "quantize_kernel"]

BITS = 8
# ranges learn in log space: a step moves a range's ends ~100x as far (relatively) as Adam moves
# a weight, so that a few hundred steps of 1e-4 can shrink a range severalfold
RANGE_RATE = 100.0
MAX_LOG_SCALE = float(np.log(1000.0))


def quantize_kernel(kernel, axis=-1, peak=None):
    """``kernel`` rounded as TFLite's per-channel int8 weights: symmetric, 255 levels of
    ``max |W_c| / 127`` along ``axis`` (the gradient passes straight through); ``peak``: the
    ``max |W_c|`` when known otherwise."""
    axis = axis % len(kernel.shape)
    reduce = tuple(i for i in range(len(kernel.shape)) if i != axis)
    peak = ops.max(ops.abs(kernel), axis=reduce) if peak is None else peak
    peak = ops.stop_gradient(ops.maximum(peak, 1e-12))
    return fake_quant_with_min_max_vars(kernel, -peak, peak, num_bits=BITS, narrow_range=True,
                                        axis=axis)


def quantize_constant(values):
    """A constant operand of an elementwise op (a batch norm's scale or shift) as the int8
    graph stores it: one asymmetric range over all channels, 256 levels."""
    lo = ops.stop_gradient(ops.minimum(ops.min(values), 0.0))
    hi = ops.stop_gradient(ops.maximum(ops.max(values), lo + 1e-12))
    return fake_quant_with_min_max_vars(values, lo, hi, num_bits=BITS)


@keras.saving.register_keras_serializable(package="zoo")
class FakeQuant(keras.layers.Layer):
    """Per-tensor int8 rounding of its input, ``fq(x, lo, hi)``.

    While ``observing`` is set (:func:`calibrate`) it passes its input through and widens
    ``[lo, hi]`` to cover it and ``span`` (0 at least, as TFLite's ranges do).  In training the
    range is learned, ``lo e^(RANGE_RATE a)`` to ``hi e^(RANGE_RATE b)`` (0 stays inside), with
    the gradient of LSQ (Esser et al., ICLR 2020, eq. 3): clipped inputs pull an end out, the
    rounding error ``(fq(x) - x) / (hi - lo)`` of the others moves the width.  :meth:`learned`
    then moves the learned range into ``lo`` and ``hi``, which inference and the converter read.
    """

    def __init__(self, span=(0.0, 0.0), **kwargs):
        super().__init__(**kwargs)
        self.span = tuple(float(v) for v in span)
        self.observing = False
        self._seen = None

    def build(self, input_shape):
        self.lo = self.add_weight(name="lo", shape=(), initializer="zeros", trainable=False)
        self.hi = self.add_weight(name="hi", shape=(), initializer="ones", trainable=False)
        self.log_lo = self.add_weight(name="log_lo", shape=(), initializer="zeros")
        self.log_hi = self.add_weight(name="log_hi", shape=(), initializer="zeros")

    def call(self, x, training=None):
        if self.observing:
            seen = (float(ops.min(x)), float(ops.max(x)))
            self._seen = seen if self._seen is None else (min(self._seen[0], seen[0]),
                                                          max(self._seen[1], seen[1]))
            return x
        if not training:
            return fake_quant_with_min_max_vars(x, self.lo, self.hi, num_bits=BITS)
        lo, hi = self._learned_range()
        y = fake_quant_with_min_max_vars(x, lo, hi, num_bits=BITS)
        width = hi - lo
        error = ops.where((x >= lo) & (x <= hi), (y - x) / width, 0.0)
        # zero in value; its gradient is the rounding error's, through the width
        return y + (width - ops.stop_gradient(width)) * ops.stop_gradient(error)

    def _learned_range(self):
        # a learned end stays within 1000x of its calibrated value (no overflow, no dead range)
        scale = lambda log: ops.exp(ops.clip(RANGE_RATE * log, -MAX_LOG_SCALE, MAX_LOG_SCALE))
        lo = self.lo * scale(self.log_lo)
        return lo, ops.maximum(self.hi * scale(self.log_hi), lo + 1e-6)

    def _fix(self, lo, hi):
        self.lo.assign(lo)
        self.hi.assign(hi)
        self.log_lo.assign(0.0)
        self.log_hi.assign(0.0)

    def learned(self):
        """Fixes the range at the one learned in training."""
        self._fix(*self._learned_range())

    def settle(self):
        """Fixes the range at what was observed (and 0)."""
        if self._seen is None:
            raise ValueError(f"{self.name} saw no calibration input")
        lo, hi = min(self._seen[0], *self.span, 0.0), max(self._seen[1], *self.span, 0.0)
        self._fix(lo, max(hi, lo + 1e-6))
        self._seen = None

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "span": list(self.span)}


@keras.saving.register_keras_serializable(package="zoo")
class QuantConv2D(keras.layers.Conv2D):
    """A ``Conv2D`` on per-channel int8-rounded weights (its output is rounded by the next
    :class:`FakeQuant`, after its fused activation)."""

    def call(self, x):
        y = ops.conv(x, quantize_kernel(self.kernel), strides=self.strides,
                     padding=self.padding, dilation_rate=self.dilation_rate)
        if self.use_bias:
            y = y + self.bias
        return self.activation(y)


@keras.saving.register_keras_serializable(package="zoo")
class QuantDepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """A ``DepthwiseConv2D`` on per-channel int8-rounded weights."""

    def call(self, x):
        y = ops.depthwise_conv(x, quantize_kernel(self.kernel, axis=2), strides=self.strides,
                               padding=self.padding, dilation_rate=self.dilation_rate)
        if self.use_bias:
            y = y + self.bias
        return self.activation(y)


@keras.saving.register_keras_serializable(package="zoo")
class QuantBatchNorm(keras.layers.BatchNormalization):
    """An inference batch norm as its int8 graph computes it: a per-channel multiply and an
    add, each output rounded (its statistics stay frozen in training)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.q_scaled, self.q_out = FakeQuant(name="q_scaled"), FakeQuant(name="q_out")

    def call(self, x, training=None, mask=None):
        scale, shift = inference_affine(self)
        return self.q_out(self.q_scaled(x * quantize_constant(scale)) + quantize_constant(shift))


@keras.saving.register_keras_serializable(package="zoo")
class QuantXUnit(ExportXUnit):
    """An :class:`ExportXUnit` (split, whole or block depthwise conv, inference batch norms) as
    its int8 graph computes it: ``BN1`` as a multiply and an add or a 1x1 conv (with the ReLU),
    each split piece and partial sum or the whole conv (a block form's grouped conv is the whole
    conv, on the same per-channel weights: each of its output channels holds all k x k taps), the
    clipped ``d``, ``-d``, ``d * -d``, ``exp`` and ``z g`` rounded.  A block form trains as the
    whole conv (the same values, faster).  Its batch norms use their moving statistics in
    training too (they are frozen)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.post_norm:
            raise ValueError("quantization-aware xUnits take the export form: a batch norm "
                             "after the depthwise conv")
        k, s = self.kernel_size, self.split
        # split: pieces rounded one by one, then their partial sums; whole or block: the conv's
        # output is rounded once, on the (clipped) range q_gate_in reads
        pieces = 0 if s is None else 4 if 2 * s >= k else len(range(0, k, s)) ** 2
        names = ["q_shifted", "q_gate_in", "q_negated", "q_product", "q_gate", "q_out"]
        (self.q_shifted, self.q_gate_in, self.q_negated, self.q_product, self.q_gate,
         self.q_out) = (FakeQuant(name=n) for n in names)
        # BN1 as a multiply has its own rounded output; as a 1x1 conv (pointwise_norm), not
        self.q_scaled = None if self.pointwise_norm else FakeQuant(name="q_scaled")
        self.q_terms = [FakeQuant(name=f"q_term{i}") for i in range(pieces)]
        # the last partial sum is rounded on the clipped range (q_gate_in) when the gate clips
        sums = max(pieces - 1 - (self.gate_clip is not None), 0)
        self.q_sums = [FakeQuant(name=f"q_sum{i}") for i in range(sums)]

    def call(self, z, training=None):
        d = z
        if self.norm_in is not None and self.pointwise_norm:
            d = self._pointwise_norm_in(d)
        elif self.norm_in is not None:
            scale, shift = inference_affine(self.norm_in)
            d = self.q_scaled(d * quantize_constant(scale)) + quantize_constant(shift)
        if self.relu:
            d = ops.relu(d)
        d = self.q_shifted(d) if self.norm_in is not None or self.relu else d
        kernel, bias = self._fold_norm_out(self.depthwise.kernel, self.depthwise.bias)
        if self.split is not None:
            d = self._split_depthwise(d, kernel, bias)
        elif self.block is not None and not training:
            d = self._block_depthwise(d, kernel, bias)
        else:
            d = ops.depthwise_conv(d, quantize_kernel(kernel, axis=2), padding="same") + bias
        if self.gate_clip is not None:
            d = ops.clip(d, -self.gate_clip, self.gate_clip)
        d = self.q_gate_in(d)
        if self.gate == "gaussian":
            d = self.q_gate(ops.exp(self.q_product(d * self.q_negated(d * -1.0))))
        return self.q_out(z * d)

    def _piece_kernel(self, kernel):
        return quantize_kernel(kernel, axis=2)

    def _grouped_kernel(self, grouped, kernel):
        # each output channel holds all of its depthwise channel's taps: the same per-channel
        # int8 weights.  The range comes from the depthwise kernel, which the converter folds
        # before it reads the FakeQuant (from the gathered kernel, it stays a Flex op)
        peak = ops.repeat(ops.max(ops.abs(kernel), axis=(0, 1, 3)), self.block ** 2)
        return quantize_kernel(grouped, peak=peak)

    def _add_piece(self, out, term, bias, count):
        term = self.q_terms[count](term + bias if out is None else term)
        if out is None:
            return term, 1
        out = out + term
        if count - 1 < len(self.q_sums):
            out = self.q_sums[count - 1](out)
        return out, count + 1


# Layers whose output the int8 graph keeps as one tensor, rounded by a FakeQuant after them.
_ROUNDED_OUTPUT = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.ReLU,
                   keras.layers.Subtract, keras.layers.Add)


def quantization_model(model):
    """A copy of an export-ready functional ``model`` (:func:`zoo.export.rewrites.integer_form`)
    with int8 rounding simulated where its int8 graph rounds (same weights; ranges unset until
    :func:`calibrate`).  Layers it does not know raise a ``ValueError`` naming them."""
    layer_readers = readers(model)
    unknown = sorted({type(layer).__name__ for layer in model.layers
                      if not isinstance(layer, (keras.layers.InputLayer, XUnit,
                                                keras.layers.BatchNormalization) + _ROUNDED_OUTPUT)
                      or (type(layer) is keras.layers.Conv2D and layer.groups != 1)})
    if unknown:
        raise ValueError(f"quantization-aware fine-tuning does not handle {', '.join(unknown)} "
                         f"layers ({model.name})")

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, XUnit):
            return QuantXUnit.from_config(config)
        if type(layer) is keras.layers.Conv2D:
            return QuantConv2D.from_config(config)
        if type(layer) is keras.layers.DepthwiseConv2D:
            return QuantDepthwiseConv2D.from_config(config)
        if type(layer) is keras.layers.BatchNormalization:
            return QuantBatchNorm.from_config(config)
        return layer.__class__.from_config(config)

    inputs = keras.tree.map_structure(lambda t: keras.Input(t.shape[1:], name=t.name),
                                      model.input)
    # the images in and out keep [0, 1] in range whatever calibration saw (a bright test image
    # is not clipped), with the range fixed: the protocol scores the output on [0, 1]
    image = {"span": (0.0, 1.0), "trainable": False}
    rounded_inputs = {id(t): FakeQuant(name=f"q_{t.name}", **image)(t)
                      for t in keras.tree.flatten(inputs)}

    def call(layer, *args, **kwargs):
        args = keras.tree.map_structure(lambda t: rounded_inputs.get(id(t), t), args)
        out = layer(*args, **kwargs)
        fused = [type(r) for r in layer_readers.get(layer.name, [])] == [keras.layers.ReLU]
        convolution = isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))
        if isinstance(layer, _ROUNDED_OUTPUT) and not (convolution and fused):
            out = FakeQuant(name=f"q_{layer.name}",
                            **(image if layer.name in model.output_names else {}))(out)
        return out

    copy = keras.models.clone_model(model, input_tensors=inputs, clone_function=clone,
                                    call_function=call)
    copy = keras.Model(inputs, copy.output, name=model.name)
    rounding = {id(v) for quant in fake_quants(copy) for v in quant.weights}
    for source in model.layers:
        if source.weights:
            target = copy.get_layer(source.name)
            weights = [v for v in target.weights if id(v) not in rounding]
            if len(weights) != len(source.weights):
                raise ValueError(f"{source.name}: {len(source.weights)} weights, its "
                                 f"quantization-aware copy has {len(weights)}")
            for variable, value in zip(weights, source.weights):
                variable.assign(value)
    return copy


def fake_quants(model):
    """Every :class:`FakeQuant` of ``model``, nested ones included."""
    return [layer for layer in model._flatten_layers() if isinstance(layer, FakeQuant)]


def calibrate(model, inputs, batch=16):
    """Sets every activation range of a :func:`quantization_model` to the min/max its float
    graph reaches on ``inputs`` (a list of ``(1, H, W, C)`` arrays)."""
    quants = fake_quants(model)
    for quant in quants:
        quant.observing = True
    try:
        for start in range(0, len(inputs), batch):
            model(np.concatenate(inputs[start:start + batch]), training=False)
    finally:
        for quant in quants:
            quant.observing = False
    for quant in quants:
        quant.settle()
    return model


class Distillation(keras.Model):
    """``model``, with the loss of :func:`fine_tune`: its mean squared difference from
    ``reference``'s output on the same input, the reference frozen and in inference mode.  The
    reference runs in the loss of each training step (on the GPU where there is one), not in
    the input pipeline (on the CPU)."""

    def __init__(self, model, reference, **kwargs):
        super().__init__(name=f"{model.name}_distilled", **kwargs)
        self.tuned, self.reference = model, reference

    def call(self, x, training=None):
        return self.tuned(x, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        target = ops.stop_gradient(self.reference(x, training=False))
        return ops.mean(ops.square(y_pred - target))


def fine_tune(model, teacher, dataset, steps, learning_rate=1e-4, verbose="auto"):
    """Fine-tunes a calibrated :func:`quantization_model` for ``steps`` steps of Adam to
    reproduce its float ``teacher``'s outputs (mean squared error; the quantization drop is
    their difference) on the degraded images of ``(degraded, clean)`` batches (the teacher runs
    in the training step, on the GPU where there is one); the activation ranges (but the
    input's and output's) are learned with the weights (:class:`FakeQuant`), then fixed.  The
    step size decays from ``learning_rate`` to 0 on a cosine over the ``steps``: the last steps
    settle the weights instead of leaving them wherever a full-size step put them.  Returns the
    ``History`` (its ``model`` is the one trained, a :class:`Distillation`)."""
    layers = teacher._flatten_layers()   # outer layers before their sublayers
    flags = [layer.trainable for layer in layers]
    teacher.trainable = False
    distilled = Distillation(model, teacher)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=int(steps))
    distilled.compile(optimizer=keras.optimizers.Adam(schedule))
    try:
        return distilled.fit(dataset, epochs=1, steps_per_epoch=int(steps), verbose=verbose,
                             shuffle=False)   # the pipeline shuffles
    finally:    # interrupted too: inference and the converter read the ranges the weights saw
        for layer, flag in zip(layers, flags):    # as it was, sublayer by sublayer
            layer.trainable = flag
        for quant in fake_quants(model):
            quant.learned()
