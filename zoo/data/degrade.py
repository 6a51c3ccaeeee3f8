"""Degradations of SPEC §4 as pure functions of (image, level, seed), in numpy and TensorFlow.

* denoising: ``noisy = clean + sigma / 255 * N(0, 1)``, not clipped;
* super-resolution: MATLAB bicubic down by ``1 / s`` and, for interpolated-input models
  (SRCNN, VDSR, MemNet), back up by ``s``;
* JPEG: the 8-bit image encoded by libjpeg at quality ``q`` and decoded.

Images are float ``HxWxC`` in ``[0, 1]`` (``uint8`` is accepted where the step is 8-bit anyway).
The numpy functions are the protocol's reference; the ``tf_`` twins run inside ``tf.data`` and may
draw the level per sample: pass a list (one value picked uniformly per call) or, for noise and
JPEG quality, a scalar tensor (e.g. from :func:`tf_uniform_level`).

TF seeds: ``seed=None`` uses TF's stateful random ops (reproducible under ``tf.random.set_seed``);
a shape-``[2]`` integer seed uses the stateless ops, so equal seeds give equal samples.
"""

import io
import zlib

import numpy as np
from .._tf import tf
from PIL import Image

from .io import quantize, to_float
from .resize import imresize, imresize_np

__all__ = [
    "image_seed", "add_noise", "bicubic_degrade", "jpeg_degrade",
    "tf_pick_level", "tf_uniform_level", "tf_add_noise", "tf_bicubic_degrade", "tf_jpeg_degrade",
]


def image_seed(name, seed=0):
    """Seed for one test image, from its name (SPEC §4: a fixed seed per image).

    ``(seed, crc32(name))``, accepted by ``np.random.default_rng``; stable across runs and
    platforms, unlike ``hash``.
    """
    return (int(seed), zlib.crc32(str(name).encode("utf-8")))


# --- numpy (reference) ---------------------------------------------------------------------------

def add_noise(img, sigma, seed=None):
    """``img + sigma / 255 * N(0, 1)``, not clipped; noise drawn in float64 by ``default_rng(seed)``.

    ``sigma``: one number, or one per channel (e.g. ``(10, 25, 40)`` for R, G, B).
    """
    img = np.asarray(img)
    if not np.issubdtype(img.dtype, np.floating):
        raise TypeError(f"add_noise needs a float image in [0, 1], got {img.dtype}")
    sigma = np.asarray(sigma, np.float64)
    if sigma.ndim and sigma.shape != img.shape[-1:]:
        raise ValueError(f"{sigma.size} per-channel sigmas for an image of {img.shape[-1]} "
                         "channel(s)")
    noise = np.random.default_rng(seed).standard_normal(img.shape)
    return (img + sigma / 255 * noise).astype(img.dtype)


def _check_divisible(shape, scale):
    if shape[-3] % scale or shape[-2] % scale:
        raise ValueError(f"image size {shape[-3]}x{shape[-2]} is not a multiple of the scale "
                         f"{scale}; modcrop it first")


def bicubic_degrade(img, scale, upsample=True):
    """MATLAB bicubic down by ``1 / scale`` (and back up by ``scale`` if ``upsample``).

    ``img`` must be a multiple of ``scale`` in height and width (see ``modcrop``). Computed in
    float64 by :func:`imresize_np` and returned in ``img``'s dtype (an integer image follows
    MATLAB's integer semantics; the SR protocol uses the float image, SPEC §4).
    """
    _check_divisible(np.shape(img), scale)
    out = imresize_np(img, 1 / scale)
    return (imresize_np(out, scale) if upsample else out).astype(np.asarray(img).dtype)


def jpeg_degrade(img, quality):
    """Encode the 8-bit image with Pillow's libjpeg at ``quality`` (1-100) and decode it.

    Float input is rounded to ``uint8`` first and the result returned as float in ``[0, 1]``;
    ``uint8`` in, ``uint8`` out. SPEC §4: Pillow's encoder gives MATLAB's numbers to 0.01 dB.
    """
    img = np.asarray(img)
    u8 = img if img.dtype == np.uint8 else quantize(img, np.uint8)
    buf = io.BytesIO()
    pil = Image.fromarray(u8[..., 0] if u8.shape[-1] == 1 else u8)
    pil.save(buf, format="JPEG", quality=int(quality))
    out = np.asarray(Image.open(buf)).reshape(u8.shape)
    return out if img.dtype == np.uint8 else to_float(out, img.dtype)


# --- TensorFlow ----------------------------------------------------------------------------------

def _split(seed, n):
    """``n`` independent stateless seeds from one, or ``n`` Nones."""
    if seed is None:
        return [None] * n
    return tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), n))


def _uniform(shape, seed, **kwargs):
    if seed is None:
        return tf.random.uniform(shape, **kwargs)
    return tf.random.stateless_uniform(shape, seed, **kwargs)


def _pick_index(n, seed=None):
    return _uniform([], seed, maxval=n, dtype=tf.int32)


def tf_pick_level(levels, seed=None):
    """One value of ``levels`` (a list of numbers, or of per-channel tuples), uniformly at
    random, as a tensor (a scalar, or a vector for per-channel levels)."""
    levels = tf.constant(levels)
    return tf.gather(levels, _pick_index(tf.shape(levels)[0], seed))


def tf_uniform_level(low, high, seed=None):
    """A float32 level uniform in ``[low, high)``, e.g. a blind-denoising sigma."""
    return _uniform([], seed, minval=low, maxval=high, dtype=tf.float32)


def _level(level, seed):
    """A list is drawn from; a number or tensor is used as it is."""
    return tf_pick_level(level, seed) if isinstance(level, (list, tuple)) else level


def tf_add_noise(img, sigma, seed=None):
    """TF :func:`add_noise`: ``img + sigma / 255 * N(0, 1)``, not clipped.

    ``sigma`` is a number, a scalar tensor or a list to draw from (one sigma per call, i.e. per
    sample when mapped over a dataset of images); per-channel sigmas are tuples (a list of them
    to draw from) or a vector tensor.
    """
    img = tf.convert_to_tensor(img)
    pick_seed, noise_seed = _split(seed, 2)
    sigma = tf.cast(_level(sigma, pick_seed), img.dtype)
    shape = tf.shape(img)
    noise = (tf.random.normal(shape, dtype=img.dtype) if noise_seed is None
             else tf.random.stateless_normal(shape, noise_seed, dtype=img.dtype))
    return img + sigma / 255 * noise


def tf_bicubic_degrade(img, scale, upsample=True, seed=None):
    """TF :func:`bicubic_degrade` with :func:`~zoo.data.resize.imresize`.

    ``scale`` is a python number or a list to draw from per call (each branch is built with its
    own static scale). Height and width must be multiples of the scale drawn; crop to a multiple
    of all of them (e.g. 12 for 2, 3, 4) when drawing.
    """
    img = tf.convert_to_tensor(img)

    def one(s):
        shape = tf.shape(img)
        tf.debugging.assert_equal(shape[-3:-1] % s, 0, message=f"image not a multiple of scale {s}")
        out = imresize(img, 1 / s)
        return imresize(out, s) if upsample else out

    if not isinstance(scale, (list, tuple)):
        return one(scale)
    return tf.switch_case(_pick_index(len(scale), seed), [lambda s=s: one(s) for s in scale])


def tf_jpeg_degrade(img, quality, seed=None):
    """TF :func:`jpeg_degrade`: libjpeg in-graph, matching Pillow's encoder and decoder.

    ``img`` has a static channel count (1 or 3); floats in ``[0, 1]`` are rounded to ``uint8``
    first and the result is returned as ``img``'s dtype. ``quality`` is a number, an int tensor
    or a list to draw from. ``tf.image.adjust_jpeg_quality`` is not used because it decodes with
    the fast integer IDCT, where Pillow (and MATLAB) use the accurate one.
    """
    img = tf.convert_to_tensor(img)
    u8 = img if img.dtype == tf.uint8 else quantize(img, tf.uint8)
    quality = tf.cast(_level(quality, seed), tf.int32)
    data = tf.raw_ops.EncodeJpegVariableQuality(images=u8, quality=quality)
    out = tf.io.decode_jpeg(data, channels=img.shape[-1], dct_method="INTEGER_ACCURATE")
    return out if img.dtype == tf.uint8 else tf.cast(out, img.dtype) / 255
