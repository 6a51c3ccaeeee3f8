"""NLRN's non-local module (Liu et al., NeurIPS 2018, §3.3) with correlation propagation (§4).

For every position i, with theta, phi = 1x1 convs to ``embed_filters`` and
g = a 1x1 conv (zero-initialised, so the module starts as the identity):

    logits_ij = theta_i . phi_j (+ logits of the previous state, propagated)
    z_i = sum_{j in S_i} softmax_j(logits_ij) g_j,    out_i = x_i + z_i

S_i is the q x q neighbourhood of i (positions outside the image excluded), or
the whole image when ``neighbourhood=None``.

Memory: full attention keeps an (HW)^2 logit matrix.  The q-window works on
blocks of b = (q-1)/2 pixels, each attending to the 3x3 blocks around it (a
halo that contains every q x q window of the block) and masked to the window:
9 b^2 ~ 2.25 q^2 logits per pixel, O(HW q^2) in all.  The halo is built from
pad, reshape and 9 static slices, which TFLite runs with builtin ops.
"""

import numpy as np
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="zoo")
class NonLocal(keras.layers.Layer):
    """Non-local module restricted to a q x q neighbourhood.

    Call as ``out, correlation = layer(x, correlation=None)``.  ``correlation``
    is the running sum of pre-softmax logits from earlier states (NLRN §4); the
    returned one includes this call's logits.  Its layout is internal to the
    layer and fixed by the input size.

    Args:
        embed_filters: channels of theta and phi (64 in NLRN).
        neighbourhood: odd q, or ``None`` for attention over the whole input.
    """

    def __init__(self, embed_filters=64, neighbourhood=35, **kwargs):
        super().__init__(**kwargs)
        if neighbourhood is not None and (int(neighbourhood) < 1 or int(neighbourhood) % 2 == 0):
            raise ValueError(f"neighbourhood must be an odd q >= 1 or None, got {neighbourhood!r}")
        self.embed_filters = int(embed_filters)
        self.neighbourhood = None if neighbourhood is None else int(neighbourhood)
        self.theta = keras.layers.Conv2D(self.embed_filters, 1, name="theta")
        self.phi = keras.layers.Conv2D(self.embed_filters, 1, name="phi")
        self.g = None

    def build(self, x_shape, correlation_shape=None):
        self.theta.build(x_shape)
        self.phi.build(x_shape)
        self.g = keras.layers.Conv2D(x_shape[-1], 1, kernel_initializer="zeros", name="g")
        self.g.build(x_shape)

    def call(self, x, correlation=None):
        theta, phi, g = self.theta(x), self.phi(x), self.g(x)
        if self.neighbourhood is None:
            z, logits = self._full(theta, phi, g, correlation)
        else:
            z, logits = self._window(theta, phi, g, correlation)
        return x + z, logits

    def _full(self, theta, phi, g, correlation):
        shape = ops.shape(g)
        theta = ops.reshape(theta, (shape[0], -1, self.embed_filters))
        phi = ops.reshape(phi, (shape[0], -1, self.embed_filters))
        logits = ops.matmul(theta, ops.transpose(phi, (0, 2, 1)))
        if correlation is not None:
            logits = logits + correlation
        weights = ops.softmax(logits, axis=-1)
        z = ops.matmul(weights, ops.reshape(g, (shape[0], -1, shape[3])))
        return ops.reshape(z, shape), logits

    def _window(self, theta, phi, g, correlation):
        b = max(self.neighbourhood // 2, 1)
        shape = ops.shape(g)
        height, width = shape[1], shape[2]
        pad_h, pad_w = (-height) % b, (-width) % b

        def centre(t):  # (B, H, W, C) -> (B*nH*nW, b*b, C)
            t = ops.pad(t, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
            return _to_blocks(t, b)

        def halo(t):  # (B, H, W, C) -> (B*nH*nW, 9*b*b, C), zeros outside the image
            t = ops.pad(t, ((0, 0), (b, b + pad_h), (b, b + pad_w), (0, 0)))
            t = _to_block_grid(t, b)
            rows = [t[:, dy:_end(dy), dx:_end(dx)] for dy in range(3) for dx in range(3)]
            t = ops.concatenate(rows, axis=3)  # (B, nH, nW, 9*b*b, C)
            return ops.reshape(t, (-1, 9 * b * b, ops.shape(t)[-1]))

        logits = ops.matmul(centre(theta), ops.transpose(halo(phi), (0, 2, 1)))
        if correlation is not None:
            logits = logits + correlation
        inside = halo(ops.ones_like(g[..., :1]))[:, None, :, 0] > 0.5
        allowed = ops.logical_and(inside, _window_mask(b, self.neighbourhood))
        weights = ops.softmax(ops.where(allowed, logits, -1e9), axis=-1)
        z = ops.matmul(weights, halo(g))
        z = _from_blocks(z, b, shape[0], height + pad_h, width + pad_w)
        return z[:, :height, :width], logits

    def compute_output_spec(self, x, correlation=None):
        # Stated rather than traced: the blocked reshapes of an unknown image
        # size defeat JAX's symbolic shape inference.
        if self.neighbourhood is None:
            shape = (x.shape[0], None, None)
        else:
            b = max(self.neighbourhood // 2, 1)
            shape = (None, b * b, 9 * b * b)
        return (keras.KerasTensor(x.shape, x.dtype),
                keras.KerasTensor(shape, x.dtype))

    def get_config(self):
        return {**super().get_config(), "embed_filters": self.embed_filters,
                "neighbourhood": self.neighbourhood}


def _end(offset):
    """Static slice end that leaves the last ``2 - offset`` blocks out."""
    return offset - 2 if offset < 2 else None


def _to_block_grid(t, b):
    """(B, H, W, C), H and W multiples of b -> (B, H/b, W/b, b*b, C)."""
    shape = ops.shape(t)
    t = ops.reshape(t, (shape[0], shape[1] // b, b, shape[2] // b, b, shape[3]))
    t = ops.transpose(t, (0, 1, 3, 2, 4, 5))
    return ops.reshape(t, (shape[0], shape[1] // b, shape[2] // b, b * b, shape[3]))


def _to_blocks(t, b):
    t = _to_block_grid(t, b)
    return ops.reshape(t, (-1, b * b, ops.shape(t)[-1]))


def _from_blocks(t, b, batch, height, width):
    """(B*nH*nW, b*b, C) -> (B, H, W, C); inverse of :func:`_to_blocks`."""
    channels = ops.shape(t)[-1]
    t = ops.reshape(t, (batch, height // b, width // b, b, b, channels))
    t = ops.transpose(t, (0, 1, 3, 2, 4, 5))
    return ops.reshape(t, (batch, height, width, channels))


def _window_mask(b, q):
    """Static (b*b, 9*b*b) mask: halo position j lies in the q x q window of centre i."""
    r = q // 2
    u, v = np.divmod(np.arange(b * b), b)  # centre's row and column within its block
    block_y, block_x = np.divmod(np.repeat(np.arange(9), b * b), 3)
    s, t = np.divmod(np.tile(np.arange(b * b), 9), b)  # row and column within a halo block
    dy = (block_y - 1) * b + s - u[:, None]
    dx = (block_x - 1) * b + t - v[:, None]
    return (np.abs(dy) <= r) & (np.abs(dx) <= r)
