"""Layers that export-time rewrites (:mod:`zoo.export.rewrites`) put into a model: the same
functions as the paper layers they replace, in forms a runtime prefers.

* :class:`ExportXUnit`: an :class:`zoo.layers.XUnit` whose depthwise conv runs split into pieces
  of at most ``split x split`` taps or on pixel blocks, with a clipped gate or a pointwise
  ``BN1``, same weights.
"""

import math

import keras
import numpy as np
from keras import ops

from zoo.layers import XUnit
from zoo.layers.normalization import inference_affine


@keras.saving.register_keras_serializable(package="zoo")
class ExportXUnit(XUnit):
    """:class:`zoo.layers.XUnit` in an export form; at training time (``training=True``) it
    computes as the paper layer.

    Four options leave the weights as they are:

    - ``split``: compute the k x k depthwise conv as a sum of depthwise convs
      of at most ``split`` x ``split`` taps on shifted views of the input
      (k = 9, split = 5: pieces 5x5, 5x4, 4x5, 4x4).  Exact up to float
      rounding.  LiteRT's XNNPACK runs depthwise kernels of up to 25 taps
      fast and larger ones ~50x slower (9x9 at 512x512x64: 655 ms; 5x5:
      12 ms), so ``split=5`` makes a 9x9 xUnit ~6x faster there.
    - ``block``: compute it on ``block x block`` pixel blocks: the channels' blocks are
      laid side by side (``(H, W, C) -> (H/b, W/b, C b^2)``, zero padded to a multiple of b) and
      the depthwise conv becomes a grouped conv, one group of ``b^2`` inputs and outputs per
      channel over 3 x 3 blocks when ``b >= (k - 1) / 2``.  Exact up to float rounding, 1.8x the
      multiply-adds at k = 9, b = 4, but a grouped conv runs on the GEMM kernels: a whole int8
      xUnit on XNNPACK (512x512x64, fixed shape) takes about half the time of ``split=5``, and
      sums the 81 taps in one accumulation instead of four rounded partial sums.
    - ``pointwise_norm``: at inference ``BN1`` runs as a 1x1 depthwise conv with its scale as
      the kernel and its shift as the bias (exact): an int8 graph then holds the scales as
      per-channel weights instead of one 8-bit range shared by all channels (a multiply's
      constant operand), and fuses the shift and the ReLU into the conv.
    - ``gate_clip``: the gate reads ``clip(d, -gate_clip, gate_clip)``.  With 3,
      ``exp(-9) = 1.2e-4`` is below half an int8 step of the gate, so quantized
      outputs do not change, while the calibrated range of ``d * -d`` shrinks
      from about [-100, 0] to [-9, 0]: ten times finer int8 steps.
    """

    def __init__(self, kernel_size=9, pre_norm=True, relu=True, post_norm=True,
                 gate="gaussian", split=None, block=None, gate_clip=None, pointwise_norm=False,
                 **kwargs):
        super().__init__(kernel_size, pre_norm, relu, post_norm, gate, **kwargs)
        if split is not None and int(split) < 1:
            raise ValueError(f"split must be a positive number of taps, got {split!r}")
        self.split = None if split is None else int(split)
        if block is not None and int(block) < 2:
            raise ValueError(f"block must be a side of at least 2 pixels, got {block!r}")
        if split is not None and block is not None:
            raise ValueError("split and block are two ways to run the depthwise conv: pick one")
        self.block = None if block is None else int(block)
        # the grouped kernel's gather indices depend on the two sizes only
        self._taps = None if block is None else _block_taps(self.kernel_size, self.block)
        self.gate_clip = None if gate_clip is None else float(gate_clip)
        self.pointwise_norm = bool(pointwise_norm)

    def _normalised(self, z, training):
        if self.pointwise_norm and not training:
            return self._pointwise_norm_in(z)
        return super()._normalised(z, training)

    def _spatial(self, d, training):
        if (self.split is None and self.block is None) or training:
            return super()._spatial(d, training)
        kernel, bias = self.depthwise.kernel, self.depthwise.bias
        if self.norm_out is not None:
            kernel, bias = self._fold_norm_out(kernel, bias)
        if self.split is not None:
            return self._split_depthwise(d, kernel, bias)
        return self._block_depthwise(d, kernel, bias)

    def _weight_map(self, d):
        if self.gate_clip is not None:
            d = ops.clip(d, -self.gate_clip, self.gate_clip)
        return super()._weight_map(d)

    def _pointwise_norm_in(self, z):
        """``BN1(z)`` at inference as a 1x1 depthwise conv (``pointwise_norm``)."""
        scale, shift = inference_affine(self.norm_in)
        return ops.depthwise_conv(z, self._piece_kernel(ops.reshape(scale, (1, 1, -1, 1))),
                                  padding="valid") + shift

    def _fold_norm_out(self, kernel, bias):
        """Kernel and bias of BN(DW(x)) at inference (BN is affine per channel): the split
        pieces then carry it, so no multiply-add follows their sum."""
        scale, shift = inference_affine(self.norm_out)
        return kernel * ops.reshape(scale, (1, 1, -1, 1)), bias * scale + shift

    def _split_depthwise(self, x, kernel, bias):
        """The k x k 'same' depthwise conv as a sum of 'valid' ones of at most split x split taps.

        With ``2 split >= k`` there are two pieces per axis, rows ``[0, s)`` and ``[k - s, k)``
        (the second with its rows already in the first zeroed), and each reads the input padded
        on its own sides: no slices, and XNNPACK fuses each zero pad into its conv.  Otherwise
        the input is padded once and every piece reads a sliced view of it.
        """
        k, s = self.kernel_size, self.split
        pad = (k - 1) // 2
        out, count = None, 0
        if 2 * s >= k:
            overlap = 2 * s - k
            # (first kernel row/column of the piece's window, leading zero pad of the input)
            halves = ((slice(0, s), 0, pad), (slice(s, k), overlap, pad - (k - s)))
            for rows, zero_rows, top in halves:
                for cols, zero_cols, left in halves:
                    piece = ops.pad(kernel[rows, cols],
                                    ((zero_rows, 0), (zero_cols, 0), (0, 0), (0, 0)))
                    view = ops.pad(x, ((0, 0), (top, s - 1 - top), (left, s - 1 - left), (0, 0)))
                    term = ops.depthwise_conv(view, self._piece_kernel(piece), padding="valid")
                    # the bias rides on the first piece, where the converter fuses it
                    out, count = self._add_piece(out, term, bias, count)
            return out
        x = ops.pad(x, ((0, 0), (pad, k - 1 - pad), (pad, k - 1 - pad), (0, 0)))
        starts = [(start, min(s, k - start)) for start in range(0, k, s)]
        for i, height in starts:
            for j, width in starts:
                # a piece at row i of height h reads padded rows i .. i + H + h - 2
                end_i, end_j = (i + height - k) or None, (j + width - k) or None
                view = x[:, i:end_i, j:end_j, :]
                term = ops.depthwise_conv(view, self._piece_kernel(kernel[i:i + height,
                                                                          j:j + width]),
                                          padding="valid")
                out, count = self._add_piece(out, term, bias, count)
        return out

    # Two steps of the export forms that quantization-aware fine-tuning (zoo.export.qat) overrides to
    # round each depthwise kernel, each piece and each partial sum as the int8 graph does.

    def _piece_kernel(self, kernel):
        return kernel

    def _add_piece(self, out, term, bias, count):
        """``(out + term, count + 1)``; the first piece carries the bias."""
        return (term + bias if out is None else out + term), count + 1

    def _grouped_kernel(self, grouped, kernel):
        """The grouped conv's kernel, gathered from the depthwise ``kernel``."""
        return grouped

    def _block_depthwise(self, x, kernel, bias):
        """The k x k 'same' depthwise conv as a grouped conv on b x b blocks (see ``block``).

        Block pixel ``(i, j)`` of channel ``c`` is channel ``c b^2 + i b + j`` of the block
        image; the grouped kernel at block offset ``(u, v)`` maps input pixel ``(i, j)`` to
        output pixel ``(p, q)`` with the depthwise tap ``(u b + i - p + r, v b + j - q + r)``
        (``r = (k - 1) / 2`` is the conv's radius), or 0 outside the k x k kernel.
        """
        b, channels = self.block, x.shape[-1]
        taps = self._taps
        # the k*k taps of each channel plus a zero row, gathered into the grouped kernel
        flat = ops.concatenate([ops.reshape(kernel, (-1, channels)),
                                ops.zeros((1, channels), kernel.dtype)], axis=0)
        grouped = ops.take(flat, taps, axis=0)          # (n, n, b*b in, b*b out, C)
        grouped = ops.transpose(grouped, (0, 1, 2, 4, 3))
        grouped = ops.reshape(grouped, (*taps.shape[:3], channels * b * b))
        grouped = self._grouped_kernel(grouped, kernel)
        batch, height, width = (x.shape[i] or ops.shape(x)[i] for i in range(3))
        rows, cols = -(-height // b), -(-width // b)
        # a size known only at run time is padded and cropped by what it turns out to need
        ragged = not all(isinstance(n, int) and n % b == 0 for n in (height, width))
        if ragged:
            x = ops.pad(x, ((0, 0), (0, rows * b - height), (0, cols * b - width), (0, 0)))
        x = _blocks_to_channels(x, b, batch, rows, cols, channels)
        y = ops.conv(x, grouped, padding="same") + ops.repeat(bias, b * b)
        y = _channels_to_blocks(y, b, batch, rows, cols, channels)
        if ragged:
            y = y[:, :height, :width, :]
        return y

    def get_config(self):
        return {**super().get_config(), "split": self.split, "block": self.block,
                "gate_clip": self.gate_clip, "pointwise_norm": self.pointwise_norm}


def _block_taps(kernel_size, block):
    """Indices into a depthwise kernel's ``k*k`` taps (``k*k``: zero) of the grouped kernel
    ``(n, n, b*b in, b*b out)`` over ``n x n`` blocks (see ``ExportXUnit._block_depthwise``)."""
    radius = (kernel_size - 1) // 2
    reach = math.ceil(radius / block)
    offsets, pixels = np.arange(-reach, reach + 1), np.arange(block)
    u, v, i, j, p, q = np.ix_(offsets, offsets, pixels, pixels, pixels, pixels)
    row, col = u * block + i - p + radius, v * block + j - q + radius
    inside = (row >= 0) & (row < kernel_size) & (col >= 0) & (col < kernel_size)
    taps = np.where(inside, row * kernel_size + col, kernel_size * kernel_size)
    n = 2 * reach + 1
    return taps.reshape(n, n, block * block, block * block).astype("int32")


# SPACE_TO_DEPTH (or DEPTH_TO_SPACE) and one 3-D transpose of each pixel's (b^2, C) channels: on
# XNNPACK faster than one 5-D transpose (int8 512x512x64: benchmarks/results/xunit_pieces.md).

def _blocks_to_channels(x, b, batch, rows, cols, channels):
    """``(N, rows b, cols b, C) -> (N, rows, cols, C b^2)``, channel ``c b^2 + i b + j``."""
    x = ops.space_to_depth(x, b)                            # channel (i b + j) C + c
    x = ops.reshape(x, (-1, b * b, channels))
    x = ops.transpose(x, (0, 2, 1))
    return ops.reshape(x, (batch, rows, cols, channels * b * b))


def _channels_to_blocks(y, b, batch, rows, cols, channels):
    """The inverse of :func:`_blocks_to_channels`."""
    y = ops.reshape(y, (-1, channels, b * b))
    y = ops.transpose(y, (0, 2, 1))
    y = ops.reshape(y, (batch, rows, cols, b * b * channels))
    return ops.depth_to_space(y, b)
