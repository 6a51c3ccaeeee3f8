"""MemNet's memory block (Tai et al., ICCV 2017, §3.2), as in the authors' released network.

Pre-activation everywhere: every conv is preceded by BN and ReLU.

- Recursive unit (Eq. 5): one residual block applied R times,
  ``H^r = H^(r-1) + conv(ReLU(BN(conv(ReLU(BN(H^(r-1)))))))``, ``H^0 = B_(m-1)``.
  The two convs are shared by the R recursions; every recursion has its own BNs.
  The short-term memory is ``[H^1, ..., H^R]``.
- Gate unit (Eqs. 7-8): BN, ReLU and a 1x1 conv over the concatenated memories.
  The concatenation puts the long-term memory ``[B_0 ... B_(m-1)]`` first and the
  short-term memory last, as the released code does (and as the paper's Fig. 5
  reads: "the last 64 elements" are the last recursion).
- Multi-supervised fusion (Eq. 11): ``y = sum_m w_m y_m``.
"""

import keras
from keras import ops

from zoo.layers.normalization import batch_norm, inference_affine


@keras.saving.register_keras_serializable(package="zoo")
class RecursiveUnit(keras.layers.Layer):
    """R recursions of one pre-activation residual block; returns ``[H^1, ..., H^R]``."""

    def __init__(self, filters=64, recursions=6, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.recursions = int(recursions)
        if self.recursions < 1:
            raise ValueError(f"recursions must be >= 1, got {recursions!r}")
        self.conv1 = keras.layers.Conv2D(self.filters, 3, padding="same", name="conv1")
        self.conv2 = keras.layers.Conv2D(self.filters, 3, padding="same", name="conv2")
        self.norms = [(batch_norm(name=f"bn1_r{r + 1}"), batch_norm(name=f"bn2_r{r + 1}"))
                      for r in range(self.recursions)]

    def build(self, input_shape):
        if input_shape[-1] != self.filters:
            raise ValueError(f"{self.name}: input has {input_shape[-1]} channels, "
                             f"the residual block needs {self.filters}")
        self.conv1.build(input_shape)
        self.conv2.build(input_shape)
        for norm1, norm2 in self.norms:
            norm1.build(input_shape)
            norm2.build(input_shape)

    def call(self, x, training=None):
        memories = []
        for norm1, norm2 in self.norms:
            y = self.conv1(ops.relu(norm1(x, training=training)))
            y = self.conv2(ops.relu(norm2(y, training=training)))
            x = x + y
            memories.append(x)
        return memories

    def compute_output_shape(self, input_shape):
        return [tuple(input_shape)] * self.recursions

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "recursions": self.recursions}


@keras.saving.register_keras_serializable(package="zoo")
class GateUnit(keras.layers.Layer):
    """``B_m = conv1x1(ReLU(BN([memories])))``: adaptive weights over the memories (Eq. 8)."""

    def __init__(self, filters=64, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.norm = batch_norm(name="bn")
        self.conv = keras.layers.Conv2D(self.filters, 1, name="conv")

    def build(self, input_shape):
        shapes = input_shape if isinstance(input_shape[0], (list, tuple)) else [input_shape]
        width = sum(s[-1] for s in shapes)
        concat_shape = tuple(shapes[0][:-1]) + (width,)
        self.norm.build(concat_shape)
        self.conv.build(concat_shape)

    def call(self, memories, training=None):
        if not isinstance(memories, (list, tuple)):
            memories = [memories]
        if training:
            x = ops.concatenate(memories, axis=-1)
            return self.conv(ops.relu(self.norm(x, training=True)))
        return self._call_by_parts(memories)

    def _call_by_parts(self, memories):
        """Inference without materialising the concatenation (nor its BN and ReLU copies).

        BN acts per channel and a 1x1 conv over a concatenation is the sum of 1x1
        convs over its parts, so the result is the same up to float rounding;
        the peak memory of a whole-image MemNet drops by about half.
        """
        scale, shift = inference_affine(self.norm)
        kernel = self.conv.kernel
        out, start = None, 0
        for memory in memories:
            stop = start + memory.shape[-1]
            part = ops.relu(memory * scale[start:stop] + shift[start:stop])
            term = ops.conv(part, kernel[:, :, start:stop], padding="valid")
            out = term if out is None else out + term
            start = stop
        return out + self.conv.bias

    def compute_output_shape(self, input_shape):
        shapes = input_shape if isinstance(input_shape[0], (list, tuple)) else [input_shape]
        return tuple(shapes[0][:-1]) + (self.filters,)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


@keras.saving.register_keras_serializable(package="zoo")
class MemoryBlock(keras.layers.Layer):
    """The m-th memory block: recursive unit + gate unit.

    Call on the list of earlier block outputs ``[B_0, ..., B_(m-1)]``; the
    recursive unit starts from the last of them.

    Args:
        filters: feature channels (64).
        recursions: R.
        long_term: feed ``[B_0 ... B_(m-1)]`` to the gate (False: MemNet_NL,
            only the short-term memory reaches the gate).
        short_term: feed every recursion to the gate (False: MemNet_NS, only
            the last recursion ``H^R`` does).
    """

    def __init__(self, filters=64, recursions=6, long_term=True, short_term=True, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.recursions = int(recursions)
        self.long_term = bool(long_term)
        self.short_term = bool(short_term)
        self.recursive_unit = RecursiveUnit(filters, recursions, name="recursive_unit")
        self.gate_unit = GateUnit(filters, name="gate_unit")

    def gate_width(self, blocks_before):
        """Channels entering the gate of a block that has ``blocks_before`` earlier outputs."""
        long_term = blocks_before if self.long_term else 0
        short_term = self.recursions if self.short_term else 1
        return (long_term + short_term) * self.filters

    def build(self, input_shape):
        shapes = input_shape if isinstance(input_shape[0], (list, tuple)) else [input_shape]
        self.recursive_unit.build(shapes[-1])
        self.gate_unit.build(tuple(shapes[-1][:-1]) + (self.gate_width(len(shapes)),))

    def call(self, memories, training=None):
        memories = list(memories) if isinstance(memories, (list, tuple)) else [memories]
        short = self.recursive_unit(memories[-1], training=training)
        gate_input = (memories if self.long_term else []) + (short if self.short_term else short[-1:])
        return self.gate_unit(gate_input, training=training)

    def compute_output_shape(self, input_shape):
        shapes = input_shape if isinstance(input_shape[0], (list, tuple)) else [input_shape]
        return tuple(shapes[-1])

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "recursions": self.recursions,
                "long_term": self.long_term, "short_term": self.short_term}


@keras.saving.register_keras_serializable(package="zoo")
class WeightedSum(keras.layers.Layer):
    """``y = sum_m w_m y_m`` with M free scalars, initialised to 1/M (MemNet Eq. 11).

    No normalisation: the weights are learned freely, as in the paper.
    """

    def build(self, input_shape):
        count = len(input_shape)
        self.w = self.add_weight(shape=(count,), name="supervision_weights",
                                 initializer=keras.initializers.Constant(1.0 / count))

    def call(self, predictions):
        return sum(self.w[m] * y for m, y in enumerate(predictions))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])
