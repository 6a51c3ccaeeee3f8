"""xUnit: a learnable spatial activation (Kligvasser et al., CVPR 2018, §3, Eqs. 5-6).

    out = z * g,   g = exp(-d^2),   d = BN(DW_kxk(ReLU(BN(z))))

``z`` is the output of the preceding convolution.  The gate ``g`` lies in
[0, 1], so ``|out| <= |z|``.  Fig. 6 of the paper compares designs written as
``BN+RL+CD+BN+GS`` (batch norm, ReLU, depthwise conv, batch norm, Gaussian);
:meth:`XUnit.from_design` builds any of them from that notation.
"""

import keras
from keras import ops

from zoo.layers.normalization import batch_norm

GATES = ("gaussian", "linear")
EXPORT_OPTIONS = ("split", "block", "gate_clip", "pointwise_norm")


@keras.saving.register_keras_serializable(package="zoo")
class XUnit(keras.layers.Layer):
    """Spatial activation ``z * exp(-BN(DW(ReLU(BN(z))))^2)``.

    Args:
        kernel_size: support of the depthwise filter (9 in every experiment of
            the paper).
        pre_norm: batch norm before the ReLU.
        relu: the ReLU before the depthwise conv.
        post_norm: batch norm after the depthwise conv.
        gate: ``"gaussian"`` (``exp(-d^2)``, in [0, 1]) or ``"linear"`` (the
            weight map is ``d`` itself, the paper's BN+RL+CD design).

    Parameter overhead for ``c`` channels: ``(k^2 + 4) c`` under the paper's
    convention, plus ``c`` depthwise biases.

    Export-time forms of the same function (split or block depthwise conv, clipped gate,
    pointwise batch norm) live in :class:`zoo.export.layers.ExportXUnit`.
    """

    def __init__(self, kernel_size=9, pre_norm=True, relu=True, post_norm=True,
                 gate="gaussian", **kwargs):
        super().__init__(**kwargs)
        if gate not in GATES:
            raise ValueError(f"gate must be one of {GATES}, got {gate!r}")
        self.kernel_size = int(kernel_size)
        self.pre_norm = bool(pre_norm)
        self.relu = bool(relu)
        self.post_norm = bool(post_norm)
        self.gate = gate
        self.norm_in = batch_norm(name="bn_in") if pre_norm else None
        self.depthwise = keras.layers.DepthwiseConv2D(
            self.kernel_size, padding="same", use_bias=True, name="depthwise")
        self.norm_out = batch_norm(name="bn_out") if post_norm else None

    @classmethod
    def from_design(cls, design, kernel_size=9, **kwargs):
        """An xUnit from the paper's Fig. 6 notation, e.g. ``"BN+RL+CD+BN+GS"``."""
        tokens = design.upper().replace(" ", "").split("+")
        if "CD" not in tokens:
            raise ValueError(f"an xUnit design needs a depthwise conv (CD): {design!r}")
        cd = tokens.index("CD")
        before, after = tokens[:cd], tokens[cd + 1:]
        known_before = [t for t in ("BN", "RL") if t in before]
        known_after = [t for t in ("BN", "GS") if t in after]
        if before != known_before or after != known_after:
            raise ValueError(f"xUnit designs read [BN+][RL+]CD[+BN][+GS]; got {design!r}")
        return cls(kernel_size=kernel_size, pre_norm="BN" in before, relu="RL" in before,
                   post_norm="BN" in after, gate="gaussian" if "GS" in after else "linear",
                   **kwargs)

    def build(self, input_shape):
        for layer in (self.norm_in, self.depthwise, self.norm_out):
            if layer is not None:
                layer.build(input_shape)

    def call(self, z, training=None):
        d = self._normalised(z, training) if self.norm_in is not None else z  # BN
        if self.relu:
            d = ops.relu(d)                                                      # RL
        d = self._spatial(d, training)                                           # CD (+ BN)
        return ops.multiply(z, self._weight_map(d))                              # z * GS(d)

    # The three steps, which the export forms (zoo.export.layers.ExportXUnit) override.

    def _normalised(self, z, training):
        return self.norm_in(z, training=training)

    def _spatial(self, d, training):
        d = self.depthwise(d)
        return self.norm_out(d, training=training) if self.norm_out is not None else d

    def _weight_map(self, d):
        if self.gate == "gaussian":
            # exp(d * (-1 * d)) rather than exp(-square(d)): SQUARE and NEG
            # have no int8 kernels in TFLite, MUL does.
            return ops.exp(ops.multiply(d, ops.multiply(d, -1.0)))
        return d

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size,
                "pre_norm": self.pre_norm, "relu": self.relu,
                "post_norm": self.post_norm, "gate": self.gate}

    @classmethod
    def from_config(cls, config):
        if cls is XUnit:  # files saved when the export forms were options of this layer
            config = dict(config)
            options = {k: config.pop(k) for k in EXPORT_OPTIONS if k in config}
            if any(options.values()):
                raise ValueError(f"this xUnit was saved in an export form ({options}): import "
                                 "zoo.export.layers and load it as ExportXUnit")
        return super().from_config(config)
