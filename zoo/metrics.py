"""PSNR and SSIM under the evaluation protocol of SPEC §4, and Keras metrics for training.

Protocol (SPEC §4, as in the MemNet/VDSR/DnCNN MATLAB scripts):

* ``PSNR = 10 log10(L^2 / MSE)`` over the whole (shaved) image;
* SSIM of Wang et al. (2004), Eq. 13: ``((2 mu_x mu_y + C1)(2 s_xy + C2)) /
  ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))`` with local statistics from an 11x11 Gaussian
  window (sigma 1.5), ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``, ``L = 255``, averaged over the
  window positions that fit inside the image ("valid"), without the automatic downsampling of
  the later ``ssim.m``. Images are put on the 0-255 scale first.
* SR: output rounded to uint8, Y channel, ``s`` pixels shaved from every border.
* denoising: the float output x 255, no rounding, no shave. JPEG: Y, no shave.

The numpy functions are the reference (float64). ``tf.image.psnr``/``tf.image.ssim`` implement the
same definitions but work in float32 only (``tf.image.ssim`` lands about 1e-5 from the float64
value) and on the TensorFlow backend only; the Keras metrics below use ``keras.ops`` instead.
"""

import keras
import numpy as np
from keras import ops

from .data.tasks import get_task
from .data.io import quantize, rgb_to_y, to_float

__all__ = [
    "psnr", "ssim", "gaussian_window", "protocol_metrics",
    "batch_psnr", "batch_ssim", "PSNRMetric", "SSIMMetric",
]

K1, K2, WINDOW, WINDOW_SIGMA = 0.01, 0.03, 11, 1.5


def _data_range(a, b, data_range):
    """``data_range`` if given, else the class maximum (255, 65535) or 1 for floats."""
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if data_range is not None:
        return float(data_range)
    ranges = {np.iinfo(x.dtype).max if np.issubdtype(x.dtype, np.integer) else 1.0 for x in (a, b)}
    if len(ranges) > 1:
        raise ValueError(f"cannot infer data_range from dtypes {a.dtype} and {b.dtype}; pass it")
    return float(ranges.pop())


def _shave(img, shave):
    return img[shave:img.shape[0] - shave, shave:img.shape[1] - shave] if shave else img


def psnr(a, b, *, shave=0, data_range=None):
    """PSNR in dB of two images (``HxW`` or ``HxWxC``) over all pixels and channels, in float64.

    ``shave`` pixels are cropped from every border first; ``data_range`` is the peak value
    (default: 255 for uint8, 65535 for uint16, 1 for floats). Identical images give ``inf``.
    """
    a, b = np.asarray(a), np.asarray(b)
    peak = _data_range(a, b, data_range)
    diff = _shave(a.astype(np.float64), shave) - _shave(b.astype(np.float64), shave)
    mse = np.mean(diff**2)
    return float(10 * np.log10(peak**2 / mse)) if mse > 0 else float("inf")


def gaussian_window(size=WINDOW, sigma=WINDOW_SIGMA):
    """1-D normalised Gaussian; its outer product is MATLAB ``fspecial('gaussian', size, sigma)``."""
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(img, g):
    """Separable 'valid' correlation of ``HxWxC`` with ``g`` along H and W."""
    img = np.lib.stride_tricks.sliding_window_view(img, g.size, axis=0) @ g
    return np.lib.stride_tricks.sliding_window_view(img, g.size, axis=1) @ g


def ssim(a, b, *, shave=0, data_range=None):
    """SSIM (Wang et al. 2004) per SPEC §4, in float64; channels are averaged.

    Both images are scaled to 0-255 (``x * 255 / data_range``) and compared with ``L = 255``;
    ``data_range`` defaults as in :func:`psnr`. Equals ``skimage.metrics.structural_similarity``
    with ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255``.
    """
    a, b = np.asarray(a), np.asarray(b)
    scale = 255 / _data_range(a, b, data_range)
    x, y = (_shave(v.astype(np.float64), shave) * scale for v in (a, b))
    x, y = (v[..., None] if v.ndim == 2 else v for v in (x, y))
    g = gaussian_window()
    mx, my = _filter_valid(x, g), _filter_valid(y, g)
    sxx = _filter_valid(x * x, g) - mx**2
    syy = _filter_valid(y * y, g) - my**2
    sxy = _filter_valid(x * y, g) - mx * my
    c1, c2 = (K1 * 255) ** 2, (K2 * 255) ** 2
    ssim_map = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return float(ssim_map.mean())


def _protocol_view(img, task):
    """One image as the protocol scores it: float64 in ``[0, 1]``, Y for SR/JPEG, uint8 for SR."""
    img = np.asarray(img)
    task = get_task(task)
    if task.shave and img.dtype != np.uint8:
        img = quantize(to_float(img, np.float64), np.uint8)
    if task.mode == "Y" and img.shape[-1] == 3:
        img = rgb_to_y(img)  # uint8 in -> uint8 out, as MATLAB rgb2ycbcr
    return to_float(img, np.float64)


def protocol_metrics(restored, clean, task, level):
    """PSNR and SSIM of ``restored`` against ``clean`` for ``task`` at ``level`` (SPEC §4).

    Parameters
    ----------
    restored, clean : ``HxWxC`` images, float in ``[0, 1]`` or ``uint8``; RGB images are scored
        on Y for "sr" and "jpeg" (Y of uint8 rounded to uint8, Y of floats not rounded).
    task : a :data:`~zoo.data.tasks.TASKS` name: "denoise" (float x 255, no shave), "sr"
        (uint8 rounding, shave ``level`` pixels), "jpeg" (no rounding, no shave; SPEC §4
        prescribes none), "denoise_rgb" (as "denoise", on R, G and B).
    level : sigma, scale or quality; only the SR scale changes the scoring.

    Returns
    -------
    ``{"psnr": dB, "ssim": value}``
    """
    shave = int(level) if get_task(task).shave else 0
    x, y = _protocol_view(restored, task), _protocol_view(clean, task)
    return {"psnr": psnr(x, y, shave=shave, data_range=1.0),
            "ssim": ssim(x, y, shave=shave, data_range=1.0)}


# --- Keras ---------------------------------------------------------------------------------------

def _crop(x, shave):
    return x[:, shave:-shave, shave:-shave, :] if shave else x


def batch_psnr(y_true, y_pred, data_range=1.0, shave=0):
    """Per-image PSNR of ``NxHxWxC`` batches with ``keras.ops``; returns shape ``(N,)``.

    Differs from the protocol on purpose: no uint8 rounding or Y conversion (models already see
    Y/gray patches and their float output is what training improves), and MSE is floored at
    ``1e-10 * data_range^2`` (PSNR <= 100 dB) so an exact patch cannot make the mean infinite.
    """
    y_true = _crop(ops.cast(y_true, "float32"), shave)
    y_pred = _crop(ops.cast(y_pred, "float32"), shave)
    mse = ops.mean(ops.square(y_true - y_pred), axis=(1, 2, 3))
    return 10 * ops.log10(data_range**2 / ops.maximum(mse, 1e-10 * data_range**2))


def _filter_valid_ops(x, kernel):
    """Depthwise separable 'valid' Gaussian filtering of ``NxHxWxC``."""
    channels = x.shape[-1]
    rows = ops.tile(ops.reshape(kernel, (-1, 1, 1, 1)), (1, 1, channels, 1))
    cols = ops.tile(ops.reshape(kernel, (1, -1, 1, 1)), (1, 1, channels, 1))
    return ops.depthwise_conv(ops.depthwise_conv(x, rows, padding="valid"), cols, padding="valid")


def batch_ssim(y_true, y_pred, data_range=1.0, shave=0):
    """Per-image SSIM of ``NxHxWxC`` batches with ``keras.ops``; returns shape ``(N,)``.

    The protocol's SSIM (same window, constants, 0-255 scale and valid region), but in float32
    (within 1e-5 of the float64 :func:`ssim`) and without rounding or Y conversion, for the same
    reasons as :func:`batch_psnr`; patches must be at least 11 px after the shave.
    """
    kernel = ops.convert_to_tensor(gaussian_window(), dtype="float32")
    x = _crop(ops.cast(y_true, "float32"), shave) * (255 / data_range)
    y = _crop(ops.cast(y_pred, "float32"), shave) * (255 / data_range)
    mx, my = _filter_valid_ops(x, kernel), _filter_valid_ops(y, kernel)
    sxx = _filter_valid_ops(x * x, kernel) - mx * mx
    syy = _filter_valid_ops(y * y, kernel) - my * my
    sxy = _filter_valid_ops(x * y, kernel) - mx * my
    c1, c2 = (K1 * 255) ** 2, (K2 * 255) ** 2
    ssim_map = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return ops.mean(ssim_map, axis=(1, 2, 3))


class _ImageMetric(keras.metrics.MeanMetricWrapper):
    """Mean over images of a per-image metric; higher is better."""

    def __init__(self, fn, data_range, shave, name, dtype):
        super().__init__(fn=fn, name=name, dtype=dtype, data_range=data_range, shave=shave)
        self.data_range, self.shave = data_range, shave
        self._direction = "up"

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype,
                "data_range": self.data_range, "shave": self.shave}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="zoo")
class PSNRMetric(_ImageMetric):
    """Mean per-image PSNR (dB) for ``model.fit``; see :func:`batch_psnr` for how it differs
    from the protocol (no rounding, no Y conversion, computed on training patches)."""

    def __init__(self, data_range=1.0, shave=0, name="psnr", dtype=None):
        super().__init__(batch_psnr, data_range, shave, name, dtype)


@keras.saving.register_keras_serializable(package="zoo")
class SSIMMetric(_ImageMetric):
    """Mean per-image SSIM for ``model.fit``; see :func:`batch_ssim` (float32, no rounding)."""

    def __init__(self, data_range=1.0, shave=0, name="ssim", dtype=None):
        super().__init__(batch_ssim, data_range, shave, name, dtype)
