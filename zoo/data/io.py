"""Reading and writing images, and MATLAB's integer and colour conventions (SPEC §4).

Arrays are always ``HxWxC`` with ``C = 1`` (gray) or ``3`` (RGB); alpha is dropped and palettes
are expanded. Float images lie in ``[0, 1]``. Integer images keep MATLAB's semantics: converting
reals to ``uint8``/``uint16`` rounds half away from zero and saturates (MATLAB ``uint8()``), and the
colour conversions return the class they were given, rounded (``rgb2ycbcr`` on ``uint8`` returns
``uint8``, which the SR protocol relies on).

Files are decoded with Pillow. Pillow keeps 16 bits only for one-channel images, so 16-bit colour
PNGs are decoded/encoded with ``tf.io`` and 16-bit colour TIFFs with ``tifffile``.
"""

import io
import os
import warnings
from pathlib import Path

import numpy as np
from .._tf import decode_errors, is_tensor, tf
from ..files import write_bytes_atomically
import tifffile
from PIL import Image, UnidentifiedImageError

__all__ = [
    "IMAGE_EXTENSIONS", "ImageReadError", "read_image", "read_image_and_depth", "list_images", "read_folder", "write_image",
    "round_cast", "quantize", "to_float", "convert_mode",
    "rgb_to_y", "rgb_to_ycbcr", "ycbcr_to_rgb", "rgb_to_gray", "tf_rgb_to_y",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MODES = (None, "gray", "Y", "RGB")


class ImageReadError(ValueError):
    """An image file is missing, empty, truncated, or not an image we can decode."""

    def __init__(self, path, reason):
        super().__init__(f"cannot read image {os.fspath(path)!r}: {reason}")
        self.path = Path(path)
        self.reason = reason


# --- integer conventions -----------------------------------------------------------------------

def round_cast(x, dtype):
    """MATLAB ``uint8(x)``/``uint16(x)``: round half away from zero, saturate; numpy or TF.

    ``x`` is on the integer scale (e.g. 0..255), not in ``[0, 1]``.
    """
    if is_tensor(x):
        dtype = tf.as_dtype(dtype)
        return tf.cast(tf.floor(tf.clip_by_value(x, 0, dtype.max) + 0.5), dtype)
    dtype = np.dtype(dtype)
    return np.floor(np.clip(x, 0, np.iinfo(dtype).max) + 0.5).astype(dtype)


def quantize(img, dtype="uint8"):
    """Float image in ``[0, 1]`` -> integer image (MATLAB ``im2uint8``/``im2uint16``); numpy or TF."""
    top = tf.as_dtype(dtype).max if is_tensor(img) else np.iinfo(np.dtype(dtype)).max
    return round_cast(img * top, dtype)


def to_float(img, dtype="float32"):
    """Integer image -> float in ``[0, 1]`` (MATLAB ``im2double``); float images are only cast."""
    img = np.asarray(img)
    if np.issubdtype(img.dtype, np.integer):
        return (img / np.iinfo(img.dtype).max).astype(dtype)
    return img.astype(dtype)


def _convert_dtype(img, dtype):
    """Integer or float image -> ``dtype``, rescaling between classes as MATLAB's ``im2*`` do."""
    dtype = np.dtype(dtype)
    if dtype == img.dtype:
        return img
    if np.issubdtype(dtype, np.floating):
        return to_float(img, dtype)
    return quantize(to_float(img, np.float64), dtype)


# --- colour (ITU-R BT.601, MATLAB rgb2ycbcr / ycbcr2rgb / rgb2gray) -----------------------------

_YCBCR = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]])
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0])
# rgb2gray: first row of the inverse of the NTSC (YIQ -> RGB) matrix.
_GRAY = np.linalg.inv([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.106, 1.703]])[0]


def _class_scale(dtype):
    """(matrix scale, offset scale) of MATLAB's rgb2ycbcr for float, uint8 and uint16 inputs."""
    if dtype == np.uint8:
        return 1 / 255, 1.0
    if dtype == np.uint16:
        return 257 / 65535, 257.0
    if np.issubdtype(dtype, np.floating):
        return 1 / 255, 1 / 255
    raise TypeError(f"unsupported image dtype {dtype}")


def _lincomb(img, rows, offsets):
    """``out[..., p] = sum_c rows[p, c] * img[..., c] + offsets[p]`` in float64, MATLAB order."""
    x = img.astype(np.float64)
    out = np.stack(
        [r[0] * x[..., 0] + r[1] * x[..., 1] + r[2] * x[..., 2] + o for r, o in zip(rows, offsets)],
        axis=-1,
    )
    if np.issubdtype(img.dtype, np.integer):
        return round_cast(out, img.dtype)
    return out.astype(img.dtype)


def _check_rgb(rgb):
    rgb = np.asarray(rgb)
    if rgb.shape[-1] != 3:
        raise ValueError(f"expected an RGB image (last axis 3), got shape {rgb.shape}")
    return rgb


def rgb_to_ycbcr(rgb):
    """MATLAB ``rgb2ycbcr``: Y = 16 + 65.481 R + 128.553 G + 24.966 B (R, G, B in [0, 1]), etc.

    Float input in ``[0, 1]`` gives float output on the ``[0, 1]`` scale (Y in [16, 235] / 255);
    ``uint8``/``uint16`` input gives the same class, rounded (SPEC §4).
    """
    rgb = _check_rgb(rgb)
    t, o = _class_scale(rgb.dtype)
    return _lincomb(rgb, _YCBCR * t, _YCBCR_OFFSET * o)


def rgb_to_y(rgb):
    """The Y channel of :func:`rgb_to_ycbcr`, as ``...x1``; ``uint8`` in, ``uint8`` out."""
    rgb = _check_rgb(rgb)
    t, o = _class_scale(rgb.dtype)
    return _lincomb(rgb, _YCBCR[:1] * t, _YCBCR_OFFSET[:1] * o)


def ycbcr_to_rgb(ycbcr):
    """MATLAB ``ycbcr2rgb``, the inverse of :func:`rgb_to_ycbcr` (floats are not clipped)."""
    ycbcr = _check_rgb(ycbcr)
    t, o = _class_scale(ycbcr.dtype)
    inv = np.linalg.inv(_YCBCR)
    return _lincomb(ycbcr, inv / t, -(inv @ _YCBCR_OFFSET) * o / t)


def rgb_to_gray(rgb):
    """MATLAB ``rgb2gray`` (0.2989 R + 0.5870 G + 0.1140 B), as ``...x1``; class preserved."""
    return _lincomb(_check_rgb(rgb), _GRAY[None], [0.0])


def tf_rgb_to_y(rgb):
    """TF version of :func:`rgb_to_y` for ``tf.data``: float in ``[0, 1]`` or ``uint8`` tensors."""
    rgb = tf.convert_to_tensor(rgb)
    if rgb.dtype != tf.uint8 and not rgb.dtype.is_floating:
        raise TypeError(f"tf_rgb_to_y needs a float or uint8 tensor, got {rgb.dtype.name}")
    t, o = _class_scale(np.dtype(rgb.dtype.as_numpy_dtype))
    k, offset = (_YCBCR[0] * t).tolist(), float(_YCBCR_OFFSET[0] * o)
    x = tf.cast(rgb, tf.float64) if rgb.dtype == tf.uint8 else rgb
    y = x[..., 0:1] * k[0] + x[..., 1:2] * k[1] + x[..., 2:3] * k[2] + offset
    return round_cast(y, tf.uint8) if rgb.dtype == tf.uint8 else y


def convert_mode(img, mode):
    """Convert ``HxWxC`` to a channel ``mode`` (see :func:`read_image`); the class is kept.

    A gray image stays gray under "Y", as in the benchmark scripts, which take the Y channel of
    colour images only.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if img.shape[-1] == 1:
        return np.repeat(img, 3, axis=-1) if mode == "RGB" else img
    if mode == "gray":
        return rgb_to_gray(img)
    if mode == "Y":
        return rgb_to_y(img)
    return img


# --- decoding ------------------------------------------------------------------------------------

def _bits_per_sample(path, im):
    """Bits per channel stored in the file (Pillow reports 16-bit colour as 8-bit RGB)."""
    if im.format == "PNG":
        with open(path, "rb") as f:
            return f.read(26)[24]  # IHDR bit depth
    if im.format == "TIFF":
        return max(im.tag_v2.get(258, (8,)))
    return 8


def _decode_wide(path, fmt):
    """16-bit colour: ``uint16`` HxWxC (alpha kept), via tf.io (PNG) or tifffile (TIFF)."""
    if fmt == "PNG":
        data = tf.io.read_file(os.fspath(path))
        return tf.io.decode_png(data, channels=0, dtype=tf.uint16).numpy()
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        arr = series.asarray()
        return np.moveaxis(arr, 0, -1) if series.axes.startswith("S") else arr


def _decode_pillow(im):
    """Pillow image -> uint8/uint16 HxWxC array, alpha and palette resolved."""
    if im.mode in ("1", "L", "LA"):
        arr = np.asarray(im.convert("L"))
    elif im.mode.startswith("I;16") or im.mode == "I":
        arr = np.asarray(im).astype(np.uint16)
    elif im.mode in ("P", "PA"):
        arr = np.asarray(im.convert("RGBA"))
    elif im.mode in ("RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
        arr = np.asarray(im.convert("RGB") if im.mode in ("CMYK", "YCbCr", "LAB", "HSV") else im)
    else:
        raise ValueError(f"unsupported pixel format {im.mode!r}")
    return arr[..., None] if arr.ndim == 2 else arr


def _decode(path):
    """Read a file into a ``uint8`` or ``uint16`` HxWxC array with C in {1, 3}."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "no such file")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "the file is empty")
    try:
        with Image.open(path) as im:
            bits = _bits_per_sample(path, im)
            if bits > 16:
                raise ValueError(f"{bits}-bit samples are not supported")
            wide = bits == 16 and not im.mode.startswith("I")  # Pillow truncated it to 8 bits
            if wide and im.format == "TIFF":
                arr = _decode_wide(path, "TIFF")
            else:
                im.load()  # decodes everything: truncation and corruption surface here
                arr = _decode_wide(path, "PNG") if wide else _decode_pillow(im)
    except UnidentifiedImageError:
        raise ImageReadError(path, "not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, tifffile.TiffFileError, *decode_errors()) as e:
        raise ImageReadError(path, f"{type(e).__name__}: {e}") from None
    if arr.shape[-1] in (2, 4):
        arr = arr[..., :-1]  # drop alpha
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3) or 0 in arr.shape:
        raise ImageReadError(path, f"unexpected pixel array of shape {arr.shape}")
    return arr


def read_image(path, mode=None, dtype="float32"):
    """Read a PNG, JPEG, BMP or TIFF image (gray or colour, 8 or 16 bit, alpha dropped).

    Parameters
    ----------
    path : file name.
    mode : None (keep the file's channels), "gray" (MATLAB ``rgb2gray``), "Y" (BT.601 luma of
        colour images; gray images are returned as they are, as the benchmark scripts do) or "RGB"
        (gray replicated).
    dtype : "float32"/"float64" -> values in ``[0, 1]``; "uint8"/"uint16" -> integer values,
        exact when the file has that bit depth and rescaled like ``im2uint8``/``im2uint16``
        otherwise. Channel conversions happen after the dtype conversion, so
        ``read_image(p, "Y", "uint8")`` is MATLAB's ``rgb2ycbcr`` of the uint8 image (SPEC §4).

    Returns
    -------
    ``HxWxC`` array, ``C = 3`` for "RGB" (or a colour file with ``mode=None``), else 1.

    Raises
    ------
    ImageReadError if the file is missing, empty, truncated or cannot be decoded.
    """
    dtype = np.dtype(dtype)
    arr = _decode(path)
    if np.issubdtype(dtype, np.floating):
        return convert_mode(to_float(arr, np.float64), mode).astype(dtype)
    return convert_mode(_convert_dtype(arr, dtype), mode)


def read_image_and_depth(path, mode=None):
    """``(float32 HxWxC in [0, 1], bits per sample: 8 or 16)``, to write results at the input's depth."""
    arr = _decode(path)
    bits = 16 if arr.dtype == np.uint16 else 8
    return convert_mode(to_float(arr, np.float64), mode).astype(np.float32), bits


# --- folders -------------------------------------------------------------------------------------

def _as_folders(folder_or_folders):
    if isinstance(folder_or_folders, (str, os.PathLike)):
        return [Path(folder_or_folders)]
    return [Path(f) for f in folder_or_folders]


def _warn_skipped(skipped, why):
    if skipped:
        names = ", ".join(skipped)
        warnings.warn(f"skipped {len(skipped)} image(s) {why}: {names}", stacklevel=3)


def _too_small(height, width, min_size):
    return min_size is not None and min(height, width) < min_size


def list_images(folder_or_folders, min_size=None):
    """Image files (by extension, case-insensitive) in one folder or a list of folders.

    Files are sorted by name within each folder; folders keep the given order. With ``min_size``,
    images whose shorter side (read from the header) is below it, or whose header cannot be
    read, are skipped with a warning.

    Raises FileNotFoundError for a missing folder and when no image is found.
    """
    folders = _as_folders(folder_or_folders)
    files, small, broken = [], [], []
    for folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"image folder {os.fspath(folder)!r} does not exist")
        for path in sorted(folder.iterdir()):
            if path.name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            if min_size is not None:
                try:
                    with Image.open(path) as im:
                        width, height = im.size
                except (OSError, SyntaxError, ValueError):
                    broken.append(path.name)
                    continue
                if _too_small(height, width, min_size):
                    small.append(path.name)
                    continue
            files.append(path)
    _warn_skipped(broken, "with unreadable headers")
    _warn_skipped(small, f"smaller than {min_size} px")
    if not files:
        raise FileNotFoundError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in "
                                f"{', '.join(map(os.fspath, folders))}")
    return files


def read_folder(folder_or_folders, mode=None, dtype="float32", min_size=None):
    """Read every image of :func:`list_images` as ``(file stem, array)`` pairs.

    Unreadable images, and images whose shorter side is below ``min_size``, are skipped with one
    warning per reason giving their count and names. Raises ImageReadError if none is left.
    """
    images, broken, small = [], [], []
    for path in list_images(folder_or_folders):
        try:
            img = read_image(path, mode=mode, dtype=dtype)
        except ImageReadError:
            broken.append(path.name)
            continue
        if _too_small(*img.shape[:2], min_size):
            small.append(path.name)
            continue
        images.append((path.stem, img))
    _warn_skipped(broken, "that could not be read")
    _warn_skipped(small, f"smaller than {min_size} px")
    if not images:
        folders = ", ".join(map(os.fspath, _as_folders(folder_or_folders)))
        raise ImageReadError(folders, "no readable image in the folder(s)")
    return images


# --- writing -------------------------------------------------------------------------------------

_PILLOW_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP",
                   ".tif": "TIFF", ".tiff": "TIFF"}


def _encode(arr, fmt, options):
    """The bytes of ``arr`` (uint8/uint16 HxWxC) as a ``fmt`` file."""
    if arr.dtype == np.uint16 and arr.shape[-1] == 3:  # Pillow cannot hold 16-bit colour
        if fmt == "PNG":
            return tf.io.encode_png(arr).numpy()
        buf = io.BytesIO()
        tifffile.imwrite(buf, arr, photometric="rgb")
        return buf.getvalue()
    buf = io.BytesIO()
    Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(buf, format=fmt, **options)
    return buf.getvalue()


def write_image(path, img, bit_depth=8, **options):
    """Write an image atomically (a temporary file in the same folder, then ``os.replace``).

    Parameters
    ----------
    path : file name; the extension picks the format (PNG, JPEG, BMP, TIFF).
    img : ``HxW`` or ``HxWxC`` (C = 1 or 3); floats in ``[0, 1]`` are rounded to ``bit_depth``,
        integer arrays are rescaled to it when their class differs.
    bit_depth : 8 or 16. 16 bits need PNG or TIFF.
    options : passed to Pillow's ``save`` (e.g. ``quality`` for JPEG).

    Returns
    -------
    ``Path`` of the written file.
    """
    path = Path(path)
    fmt = _PILLOW_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"unknown image extension {path.suffix!r} in {os.fspath(path)!r}")
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    if bit_depth == 16 and fmt not in ("PNG", "TIFF"):
        raise ValueError(f"{fmt} cannot store 16-bit images ({os.fspath(path)!r})")
    arr = np.asarray(img)
    arr = arr[..., None] if arr.ndim == 2 else arr
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3):
        raise ValueError(f"expected HxW, HxWx1 or HxWx3, got shape {arr.shape}")
    data = _encode(_convert_dtype(arr, np.uint8 if bit_depth == 8 else np.uint16), fmt, options)
    return write_bytes_atomically(path, data)
