"""tf.data pipelines: folder -> (degraded, clean) patches for ``model.fit`` (test pairs are
in :mod:`zoo.protocol`).

Training (:func:`training_dataset`):

1. Read every image once (``read_folder``: bad or too-small files are skipped
   with a warning) and cache it in the dataset.
2. Deterministic degradations are applied to the whole image once, as the
   papers do: bicubic down (and up, for interpolated-input models) per scale
   after ``modcrop``; JPEG per quality (the 8x8 block grid of the whole image).
   Several levels give one (degraded, clean) pair per level, so a blind model
   sees them mixed.
3. Patches: ``"grid"`` (every patch at ``stride``; MemNet: 31 at stride 21) or
   ``"random"`` (``patches_per_image`` crops per visit; xUnit: 80, NLRN: 43).
   Sub-pixel pairs are cropped at aligned positions (low-res patch = patch / s).
4. Per patch: Gaussian noise for denoising (unclipped, sigma per sample from
   the levels or a range), then one of the 8 dihedral transforms on input and
   target alike.
5. Batch and prefetch with ``AUTOTUNE`` parallelism.

Every random choice uses stateless ops seeded by ``(seed, element index)``, so
a pipeline is deterministic given its seed, whatever the parallelism.

:class:`NumpyPatches` is the same recipe (random crops) as a
``keras.utils.PyDataset`` in numpy, for Keras on JAX or PyTorch where
TensorFlow is not installed; this module imports TensorFlow only when a
``tf.data`` pipeline is built.
"""

import os

import numpy as np
import keras

from .._tf import tf
from tqdm.auto import tqdm

from .degrade import bicubic_degrade, tf_uniform_level
from .io import ImageReadError, read_folder
from .resize import modcrop
from .tasks import check_levels, get_task



def degrade_whole(clean, task, level, upsampling="interpolated"):
    """The deterministic, whole-image part of a degradation (SR, JPEG); a ``per_patch`` task
    (noise) adds nothing here.

    Returns ``(degraded, clean)``; for SR the clean image is modcropped to the scale.
    """
    if task == "sr":
        clean = modcrop(clean, level)
        degraded = bicubic_degrade(clean.astype(np.float64), level,
                                   upsample=upsampling == "interpolated")
        return degraded.astype(np.float32), clean
    if get_task(task).per_patch:
        return clean, clean
    return get_task(task).degrade(clean, level), clean


def _pairs(images, task, levels, upsampling):
    """(degraded, clean) whole-image pairs: one per image and deterministic level."""
    if get_task(task).per_patch:
        return [(image, image) for image in images]
    pairs = []
    for image in tqdm(images, desc=f"degrading ({task} {levels})", unit="img", leave=False):
        pairs.extend(degrade_whole(image, task, level, upsampling) for level in levels)
    return pairs


def _dihedral(x, k):
    """The k-th of the 8 dihedral transforms (k in 0..7): rot90^(k mod 4), then a flip if k >= 4."""
    x = tf.image.rot90(x, k % 4)
    return tf.cond(k >= 4, lambda: tf.image.flip_left_right(x), lambda: x)


def _grid_patches(degraded, clean, size, stride, ratio):
    """Every patch of the pair on the grid (low-res grid for sub-pixel pairs)."""
    low = size // ratio

    def cut(image, patch, step):
        patches = tf.image.extract_patches(image[None], [1, patch, patch, 1], [1, step, step, 1],
                                           [1, 1, 1, 1], "VALID")
        return tf.reshape(patches, [-1, patch, patch, tf.shape(image)[-1]])

    return tf.data.Dataset.from_tensor_slices(
        (cut(degraded, low, stride // ratio), cut(clean, size, stride)))


def _random_patches(degraded, clean, size, count, ratio, seed):
    """``count`` random crops of the pair at aligned positions."""
    low = size // ratio
    shape = tf.shape(degraded)
    tops = tf.random.stateless_uniform([count], seed, 0, shape[0] - low + 1, tf.int32)
    lefts = tf.random.stateless_uniform([count], seed + [0, 1], 0, shape[1] - low + 1, tf.int32)

    def crop(i):
        top, left = tops[i], lefts[i]
        return (degraded[top:top + low, left:left + low],
                clean[top * ratio:top * ratio + size, left * ratio:left * ratio + size])

    return tf.data.Dataset.range(count).map(crop)


def named_images(data, mode, min_size=None):
    """``(name, float32 array)`` pairs from folder(s), or the pairs themselves."""
    if isinstance(data, (list, tuple)) and data and isinstance(data[0], tuple):
        return [(name, np.asarray(image, np.float32)) for name, image in data]
    try:
        return read_folder(data, mode=mode, min_size=min_size)
    except ImageReadError:
        if min_size and any(read_folder(data, mode=mode)):
            where = data if isinstance(data, (str, os.PathLike)) else ", ".join(map(str, data))
            raise ValueError(f"no image in {where} is at least {min_size}x{min_size} px "
                             "(the patch size)") from None
        raise


def training_dataset(data, *, task, levels, patch_size, batch_size, mode="gray",
                     upsampling="interpolated", patches="random", stride=None,
                     patches_per_image=8, level_range=None, augment=True, seed=0,
                     shuffle_buffer=4096):
    """An infinite, batched ``tf.data.Dataset`` of ``(degraded, clean)`` float32 patches.

    Args:
        data: a folder, a list of folders, or a list of ``(name, HxWxC array)``
            (e.g. ``zoo.data.demo_images()``).
        task: a name of :data:`zoo.data.tasks.TASKS` (``"denoise"``, ``"sr"``, ``"jpeg"``,
            ``"denoise_rgb"``).
        levels: sigma(s) (0-255 scale), scale(s), JPEG quality(ies) or per-channel sigmas;
            a list trains one blind model on all of them.
        patch_size: side of the clean patch (the low-res patch of a sub-pixel
            pair is ``patch_size / scale``).
        batch_size: patches per batch.
        mode: ``"gray"``, ``"Y"`` or ``"RGB"``, the model's input convention.
        upsampling: ``"interpolated"`` or ``"sub-pixel"`` (SR only).
        patches: ``"random"`` or ``"grid"``.
        stride: grid stride (default: ``patch_size``, no overlap).
        patches_per_image: random crops per image per pass.
        level_range: ``(low, high)`` to draw the noise sigma uniformly instead of
            from ``levels`` (blind denoising).
        augment: apply a random dihedral transform to every pair.
        seed: makes the whole pipeline deterministic.
    """
    levels = check_levels(task, levels)
    if upsampling not in ("interpolated", "sub-pixel"):
        raise ValueError(f"upsampling must be 'interpolated' or 'sub-pixel', got {upsampling!r}")
    ratio = int(levels[0]) if task == "sr" and upsampling == "sub-pixel" else 1
    if ratio > 1 and (len(levels) > 1 or patch_size % ratio):
        raise ValueError("a sub-pixel model trains on one scale, with a patch size that is a "
                         f"multiple of it (got scales {levels}, patch {patch_size})")
    if patches not in ("random", "grid"):
        raise ValueError(f"patches must be 'random' or 'grid', got {patches!r}")
    stride = stride or patch_size
    if ratio > 1 and stride % ratio:
        raise ValueError(f"the grid stride {stride} must be a multiple of the scale {ratio}")

    images = [image for _, image in named_images(data, mode, min_size=patch_size)]
    too_small = [i for i, image in enumerate(images) if min(image.shape[:2]) < patch_size]
    if too_small:
        raise ValueError(f"{len(too_small)} image(s) are smaller than the patch size {patch_size}")
    pairs = _pairs(images, task, levels, upsampling)
    channels = images[0].shape[-1]

    def generate():
        yield from pairs

    spec = tf.TensorSpec((None, None, channels), tf.float32)
    dataset = tf.data.Dataset.from_generator(generate, output_signature=(spec, spec)).cache()
    seed = int(seed)
    if patches == "grid":
        dataset = dataset.flat_map(lambda d, c: _grid_patches(d, c, patch_size, stride, ratio))
        dataset = dataset.shuffle(shuffle_buffer, seed=seed).repeat()
    else:
        dataset = dataset.repeat().shuffle(len(pairs), seed=seed).enumerate()
        dataset = dataset.interleave(
            lambda i, pair: _random_patches(pair[0], pair[1], patch_size, patches_per_image,
                                            ratio, tf.stack([tf.cast(seed, tf.int64), i])),
            cycle_length=4, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        dataset = dataset.shuffle(shuffle_buffer, seed=seed + 1)

    def finish(index, pair):
        degraded, clean = pair
        element_seed = tf.stack([tf.cast(seed + 2, tf.int64), index])
        if per_patch is not None:
            level = (tf_uniform_level(*level_range, seed=element_seed + [0, 1]) if level_range
                     else levels)
            degraded = per_patch(clean, level, seed=element_seed)
        if augment:
            k = tf.random.stateless_uniform([], element_seed + [0, 2], 0, 8, tf.int32)
            degraded, clean = _dihedral(degraded, k), _dihedral(clean, k)
        return degraded, clean

    per_patch = get_task(task).tf_degrade if get_task(task).per_patch else None
    dataset = dataset.enumerate().map(finish, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


class NumpyPatches(keras.utils.PyDataset):
    """Random (degraded, clean) patch batches in numpy: :func:`training_dataset` without TensorFlow.

    Same whole-image degradations, aligned sub-pixel crops, per-sample noise
    (a level drawn from ``levels``) and dihedral augmentation; batch ``i`` of
    epoch ``e`` is drawn from ``default_rng((seed, e, i))``, so the data are
    deterministic given the seed.
    """

    def __init__(self, data, *, task, levels, patch_size, batch_size, steps_per_epoch,
                 mode="gray", upsampling="interpolated", augment=True, seed=0, **kwargs):
        super().__init__(**kwargs)
        levels = check_levels(task, levels)
        self.ratio = int(levels[0]) if task == "sr" and upsampling == "sub-pixel" else 1
        images = [image for _, image in named_images(data, mode, min_size=patch_size)]
        self.pairs = _pairs(images, task, levels, upsampling)
        self.task, self.levels = get_task(task), levels
        self.patch, self.batch = patch_size, batch_size
        self.steps, self.augment, self.seed, self.epoch = steps_per_epoch, augment, seed, 0

    def __len__(self):
        return self.steps

    def on_epoch_end(self):
        self.epoch += 1

    def __getitem__(self, index):
        rng = np.random.default_rng((self.seed, self.epoch, index))
        low, xs, ys = self.patch // self.ratio, [], []
        for _ in range(self.batch):
            degraded, clean = self.pairs[rng.integers(len(self.pairs))]
            top = rng.integers(degraded.shape[0] - low + 1)
            left = rng.integers(degraded.shape[1] - low + 1)
            x = degraded[top:top + low, left:left + low]
            r = self.ratio
            y = clean[top * r:top * r + self.patch, left * r:left * r + self.patch]
            if self.task.per_patch:
                level = self.levels[rng.integers(len(self.levels))]
                x = self.task.degrade(y, level, rng)
            if self.augment:
                k = int(rng.integers(8))
                x, y = (np.rot90(t, k % 4) for t in (x, y))
                if k >= 4:
                    x, y = x[:, ::-1], y[:, ::-1]
            xs.append(x)
            ys.append(y)
        return np.stack(xs).astype(np.float32), np.stack(ys).astype(np.float32)
