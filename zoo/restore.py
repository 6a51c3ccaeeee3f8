"""Inference: load a model, run it whole, tiled, patch-averaged or self-ensembled, restore files.

- :func:`load_model`: a ``.keras`` file, or a registry name plus ``.weights.h5``.
- :func:`predict`: one HxWxC image through the model, with
  ``tile``/``overlap`` (memory bounded by the tile, whatever the image size;
  overlaps blended with ramps that start 3/8 of the overlap inside each tile,
  so the result is exact when the model's receptive radius is at most that),
  ``patches="mean"`` (NLRN's test protocol: overlapping patches at a stride,
  averaged), and ``ensemble`` (the 8 dihedral transforms, transformed back and
  averaged: the self-ensemble of EDSR and later papers).
- :func:`restore_files`: files or folders in, same names out, colour handled
  by the model's convention, 16-bit kept 16-bit.
"""

import os
import warnings
import weakref
from pathlib import Path

import numpy as np
import keras
from tqdm.auto import tqdm

from zoo.data.io import list_images, read_image_and_depth, rgb_to_ycbcr, write_image, ycbcr_to_rgb
from zoo.data.resize import imresize_np


def receptive_radius(model, channels=None, cap=64):
    """How far (pixels) one input pixel can influence the output, measured with an impulse.

    Capped at ``cap``; a non-local model with full attention reaches the cap.
    """
    channels = channels or model.inputs[0].shape[-1]
    size = 2 * cap + 1
    zero = np.zeros((1, size, size, channels), np.float32)
    impulse = zero.copy()
    impulse[0, cap, cap] = 1.0
    base, hit = (_first_output(model(x, training=False)) for x in (zero, impulse))
    changed = np.argwhere(np.abs(hit - base).max(axis=-1)[0] > 1e-7)
    scale = base.shape[1] // size
    if changed.size == 0:
        return 0
    centre = cap * scale + scale // 2
    return int(np.ceil(np.abs(changed - centre).max() / scale))


_RADII = weakref.WeakKeyDictionary()


def default_overlap(model, tile):
    """The smallest overlap that makes tiling exact (see :func:`exact_margin`).

    MemNet M6R6 reaches 74 px, hence an overlap of 197; when the tile is too
    small for that, half the tile is used and a warning says tiling is then
    approximate (MemNet's authors use 150 px tiles with a 16 px border).
    """
    if model not in _RADII:
        _RADII[model] = receptive_radius(model, cap=128)
    radius = _RADII[model]
    overlap = radius
    while exact_margin(overlap) < radius:
        overlap += 1
    if overlap >= tile:
        warnings.warn(f"tile {tile} is too small for exact tiling of a model with receptive "
                      f"radius {radius} (overlap {overlap} needed); using overlap {tile // 2}")
        overlap = tile // 2
    return overlap


def _first_output(y):
    if isinstance(y, dict):
        y = y["y"]
    return keras.ops.convert_to_numpy(y).astype(np.float32)


_COMPILED = weakref.WeakKeyDictionary()


def _forward(model):
    """``model(x, training=False)``, as a cached ``tf.function`` on TensorFlow.

    Graph execution frees intermediate tensors as soon as they are consumed:
    MemNet M6R6 on 384x384 peaks at 1.8 GB instead of 3.3 GB eagerly.
    """
    if keras.backend.backend() != "tensorflow":
        return lambda x: model(x, training=False)
    if model not in _COMPILED:
        import tensorflow as tf

        _COMPILED[model] = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    return _COMPILED[model]


def _run(model, image, outputs):
    """The model on one HxWxC image: an array, or a dict of arrays for every output."""
    y = _forward(model)(image[None].astype(np.float32))
    if isinstance(y, dict):
        return {k: keras.ops.convert_to_numpy(v)[0].astype(np.float32) for k, v in y.items()} \
            if outputs == "all" else keras.ops.convert_to_numpy(y["y"])[0].astype(np.float32)
    return keras.ops.convert_to_numpy(y)[0].astype(np.float32)


def _starts(length, tile, step):
    """Tile origins along one axis: every ``step``, the last one flush with the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    return starts + [length - tile]


def exact_margin(overlap):
    """Pixels at an interior tile edge whose output is discarded: 3/8 of the overlap.

    Tiling is exact when the model's receptive radius is at most this; the
    middle quarter of the overlap is blended with a linear ramp.
    """
    return (overlap - overlap // 4) // 2


def _ramp(length, lead, trail, overlap, blend):
    """1-D weights of a tile: zero within :func:`exact_margin` of interior edges, then a ramp."""
    w = np.ones(length, np.float64)
    if blend == "mean" or overlap == 0:
        return w
    margin = exact_margin(overlap)
    rise = np.clip((np.arange(length) - margin + 1) / max(overlap - 2 * margin, 1), 0, 1)
    if lead:
        w = np.minimum(w, rise)
    if trail:
        w = np.minimum(w, rise[::-1])
    return w


def tiled(run, image, tile, overlap, scale=1, blend="ramp"):
    """``run`` over tiles of ``tile`` px that overlap by ``overlap`` px, blended.

    ``run`` maps an HxWxC tile to its output (``scale`` times larger, dict or
    array).  ``blend="mean"`` averages overlapping outputs uniformly (NLRN's
    patch protocol); ``"ramp"`` feathers them.
    """
    if overlap >= tile:
        raise ValueError(f"the overlap ({overlap}) must be smaller than the tile ({tile})")
    height, width = image.shape[:2]
    rows, cols = _starts(height, tile, tile - overlap), _starts(width, tile, tile - overlap)
    total = weights = None
    for top in rows:
        for left in cols:
            out = run(image[top:top + tile, left:left + tile])
            parts = out if isinstance(out, dict) else {None: out}
            h, w = min(tile, height - top), min(tile, width - left)
            wy = _ramp(h, top > 0, top + h < height, overlap, blend)
            wx = _ramp(w, left > 0, left + w < width, overlap, blend)
            weight = np.repeat(np.repeat(np.outer(wy, wx), scale, 0), scale, 1)[..., None]
            if total is None:
                total = {k: np.zeros((height * scale, width * scale, v.shape[-1])) for k, v in parts.items()}
                weights = np.zeros((height * scale, width * scale, 1))
            region = np.s_[top * scale:(top + h) * scale, left * scale:(left + w) * scale]
            for k, v in parts.items():
                total[k][region] += v * weight
            weights[region] += weight
    result = {k: (v / weights).astype(np.float32) for k, v in total.items()}
    return result if None not in result else result[None]


DIHEDRAL = range(8)


def dihedral(x, k):
    """The k-th of the 8 dihedral transforms of an HxWxC array (as the training augmentation)."""
    x = np.rot90(x, k % 4, axes=(0, 1))
    return x[:, ::-1] if k >= 4 else x


def undo_dihedral(x, k):
    x = x[:, ::-1] if k >= 4 else x
    return np.rot90(x, -(k % 4), axes=(0, 1))


def predict(model, image, *, tile=None, overlap=None, patches=None, stride=None,
            ensemble=False, outputs="final"):
    """Restores one HxWxC float image in [0, 1] (the model's input convention).

    Args:
        tile, overlap: tiled inference; ``overlap=None`` picks the exact one
            from the receptive field (:func:`default_overlap`).
        patches, stride: NLRN's protocol, patches of ``patches`` px at
            ``stride``, outputs averaged (e.g. 45 and 7).
        ensemble: average over the 8 dihedral transforms.
        outputs: ``"all"`` returns every output of a multi-output model
            (MemNet's y and y_m) as a dict.
    """
    image = np.asarray(image, np.float32)
    scale = output_scale(model)
    run = lambda x: _run(model, x, outputs)
    if patches:
        size = int(patches)
        run = (lambda r: lambda x: tiled(r, x, size, size - int(stride or size), scale, "mean"))(run)
    elif tile:
        overlap = default_overlap(model, int(tile)) if overlap is None else int(overlap)
        run = (lambda r: lambda x: tiled(r, x, int(tile), overlap, scale))(run)
    if not ensemble:
        return run(image)
    results = [run(np.ascontiguousarray(dihedral(image, k))) for k in DIHEDRAL]
    if isinstance(results[0], dict):
        return {key: np.mean([undo_dihedral(r[key], k) for k, r in zip(DIHEDRAL, results)], 0)
                for key in results[0]}
    return np.mean([undo_dihedral(r, k) for k, r in zip(DIHEDRAL, results)], axis=0)


def output_scale(model):
    """Output/input size ratio, from a tiny forward pass (sub-pixel models: their factor)."""
    channels = model.inputs[0].shape[-1]
    y = _first_output(model(np.zeros((1, 8, 8, channels), np.float32), training=False))
    return y.shape[1] // 8


def restore_image(model, image, info, *, task="denoise", scale=None, per_channel=False, **options):
    """Applies ``model`` to an HxWxC image in the model's colour convention (see module doc).

    - RGB models take RGB (gray is replicated).
    - Y models on colour images restore Y; Cb/Cr come from the input (denoising,
      JPEG) or from its bicubic upscaling (interpolated SR).
    - Gray models on colour images are refused unless ``per_channel``.
    - Interpolated-input SR models get the bicubic-upscaled image (``scale``).
    """
    channels = image.shape[-1]
    interpolated_sr = task == "sr" and info.upsampling == "interpolated"
    if interpolated_sr:
        if not scale:
            raise ValueError(f"{info.name} takes a bicubic-upscaled image: give the SR scale")
        image = np.clip(imresize_np(image.astype(np.float64), scale), 0, 1).astype(np.float32)
    if info.input == "RGB":
        if channels == 1:
            image = np.repeat(image, 3, axis=-1)
        return np.clip(predict(model, image, **options), 0, 1)
    if channels == 1:
        return np.clip(predict(model, image, **options), 0, 1)
    if info.input == "Y":
        ycbcr = rgb_to_ycbcr(image.astype(np.float64))
        y = predict(model, ycbcr[..., :1].astype(np.float32), **options)
        return np.clip(ycbcr_to_rgb(np.concatenate([y, ycbcr[..., 1:]], -1)), 0, 1)
    if not per_channel:
        raise ValueError(f"{info.name} is a gray model and this image has {channels} channels: "
                         "pass --per-channel to restore R, G and B one by one")
    return np.clip(np.concatenate([predict(model, image[..., c:c + 1], **options)
                                   for c in range(channels)], -1), 0, 1)


def restore_files(model, info, inputs, out, **kwargs):
    """Restores files and folders of images into ``out`` under the same names; returns the paths.

    Refuses to write into a folder that holds an input, so an input is never overwritten.
    """
    out = Path(out)
    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            files.extend(list_images(item))
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"input {os.fspath(item)!r} does not exist")
    for path in files:
        if path.parent.resolve() == out.resolve():
            raise ValueError(f"the output folder {os.fspath(out)!r} holds the input {path.name!r}; "
                             "choose another --out")
    written = []
    for path in tqdm(files, desc="restoring", unit="img"):
        image, bits = read_image_and_depth(path)
        restored = restore_image(model, image, info, **kwargs)
        target = out / (path.stem + (path.suffix if bits == 8 or path.suffix.lower() in
                                     (".png", ".tif", ".tiff") else ".png"))
        written.append(write_image(target, restored, bit_depth=bits))
    return written
