"""The tasks (SPEC §4): one :class:`Task` per degradation, the one place a new one is added.

A task says what every step needs to know about its degradation: the colour convention of its
images (which is also what the protocol scores), what a level is and which are valid, the numpy
reference that degrades a clean image (:mod:`zoo.data.degrade`), whether training degrades
every patch anew (noise) or whole images once (SR, JPEG), and how outputs are scored.  The
pipelines (:mod:`zoo.data.pipeline`), the protocol (:mod:`zoo.protocol`, :mod:`zoo.metrics`),
training, export cards and the command line read them from :data:`TASKS`.

* ``denoise``: gray images, ``clean + sigma / 255 * N(0, 1)``, not clipped (MemNet §4.1,
  xUnit §4.1);
* ``sr``: luma (Y of BT.601), MATLAB bicubic down by ``1 / scale`` (and back up for
  interpolated-input models); scored on uint8 with a ``scale``-pixel border shaved;
* ``jpeg``: luma, libjpeg at quality ``q`` (MemNet §4.1);
* ``denoise_rgb``: colour images, Gaussian noise with one sigma per channel
  (``sigma_R/sigma_G/sigma_B``, or one sigma for all three), scored on RGB.
"""

import dataclasses
from typing import Callable

import numpy as np

from .degrade import add_noise, bicubic_degrade, jpeg_degrade, tf_add_noise

__all__ = ["Task", "TASKS", "TASK_MODE", "PAPER_ONLY_TASKS", "get_task", "degrade",
           "check_levels", "parse_level"]


def _number(text):
    value = float(text)
    return int(value) if value.is_integer() else value


@dataclasses.dataclass(frozen=True)
class Task:
    """One degradation and how the zoo trains and scores it.

    ``degrade(clean, level, seed)``: the protocol's reference (float image in ``[0, 1]``).
    ``tf_degrade(patch, levels, seed)``: its TensorFlow twin for ``per_patch`` tasks, drawing
    one level of ``levels`` per patch.  ``error(level)``: why a level is invalid, or None.
    ``parse(text)``: one level from the command line.  ``describe(level)``: the degraded
    image in words (export cards).  ``shave``: SR scoring (uint8 rounding, ``level`` px border).
    """

    name: str
    mode: str
    level_name: str
    default_level: object
    degrade: Callable
    error: Callable
    describe: Callable
    parse: Callable = _number
    per_patch: bool = False
    tf_degrade: Callable = None
    shave: bool = False

    def check_levels(self, levels):
        """``levels`` as a list (tuples for per-channel levels), each checked."""
        levels = list(levels) if isinstance(levels, list) else [levels]
        if not levels:
            raise ValueError("at least one level is needed")
        levels = [tuple(level) if isinstance(level, (list, tuple)) else level for level in levels]
        for level in levels:
            problem = self.error(level)
            if problem:
                raise ValueError(f"{self.name}: {problem}, got {level!r}")
        return levels

    def format_level(self, level):
        """A level as text for names (metrics, TensorBoard, files): ``25``, ``10-25-40``."""
        return "-".join(map(str, level)) if isinstance(level, tuple) else str(level)


def _sigma_error(level):
    if isinstance(level, tuple) or not np.isscalar(level) or level < 0:
        return "a noise level is one sigma >= 0 on the 0-255 scale"
    return None


def _sigmas_error(level):
    if (not isinstance(level, tuple) or len(level) != 3
            or any(not np.isscalar(s) or s < 0 for s in level)):
        return "colour noise levels are three sigmas >= 0 (R/G/B, 0-255 scale)"
    return None


def _parse_sigmas(text):
    """``"25"`` -> ``(25, 25, 25)``; ``"10/25/40"`` -> ``(10, 25, 40)``."""
    parts = [_number(part) for part in str(text).split("/")]
    if len(parts) == 1:
        parts *= 3
    return tuple(parts)


def _scale_error(level):
    if isinstance(level, tuple) or int(level) != level or level < 2:
        return "an SR scale is an integer >= 2"
    return None


def _quality_error(level):
    if isinstance(level, tuple) or int(level) != level or not 1 <= level <= 100:
        return "a JPEG quality is an integer in 1..100"
    return None


def _upsampled(clean, scale, seed=None):
    return bicubic_degrade(clean, scale, upsample=True)


def _jpeg(clean, quality, seed=None):
    return jpeg_degrade(clean, quality)


TASKS = {task.name: task for task in (
    Task("denoise", "gray", "sigma", 25, add_noise, _sigma_error, per_patch=True,
         tf_degrade=tf_add_noise,
         describe=lambda s: f"noisy (sigma {s}/255, values may leave [0, 1])"),
    Task("sr", "Y", "scale", 3, _upsampled, _scale_error, shave=True,
         describe=lambda s: f"bicubic-upsampled x{s}"),
    Task("jpeg", "Y", "quality", 10, _jpeg, _quality_error,
         describe=lambda q: f"JPEG-compressed (quality {q})"),
    Task("denoise_rgb", "RGB", "sigma", (25, 25, 25), add_noise, _sigmas_error,
         parse=_parse_sigmas, per_patch=True, tf_degrade=tf_add_noise,
         describe=lambda s: f"noisy (sigma R/G/B {'/'.join(map(str, s))}/255, values may leave "
                            "[0, 1])"),
)}
# Channels each task works on (MemNet §4.1: gray for denoising, luminance for SISR and JPEG).
TASK_MODE = {name: task.mode for name, task in TASKS.items()}
# Tasks the papers report that the zoo has no degradation for (model metadata only).
PAPER_ONLY_TASKS = ("derain",)


def get_task(name):
    """The :class:`Task` called ``name``; a clear error naming the known ones otherwise."""
    if isinstance(name, Task):
        return name
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {name!r}") from None


def degrade(clean, task, level, seed=None):
    """The protocol's input for ``task`` at ``level``: ``get_task(task).degrade`` (SR
    upsamples; noise is seeded by ``seed``)."""
    return get_task(task).degrade(clean, level, seed)


def check_levels(task, levels):
    """``levels`` as a list, checked against what ``task`` takes; a clear error otherwise."""
    return get_task(task).check_levels(levels)


def parse_level(task, text):
    """One level of ``task`` from command-line text (``25``, ``3``, ``10/25/40``)."""
    return get_task(task).parse(text)
