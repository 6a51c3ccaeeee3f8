"""The evaluation protocol of SPEC §4 in one place: test pairs and how outputs are scored.

Every number the zoo prints for a model on a test set comes from here: ``zoo evaluate``
(:mod:`zoo.evaluate`), training validation (``run.json``, TensorBoard), an export card's Keras
and TFLite columns and the notebooks.  So one model on one set gives one number, whichever
command printed it (``tests/test_protocol.py`` checks the three paths agree).

* Reference: the 8-bit image in the task's colour mode (gray for denoising, MATLAB ``rgb2ycbcr``
  luma of the uint8 image, rounded to uint8, for SR and JPEG), as float64; modcropped for SR.
* Degraded input: SPEC §4's degradation of the reference in float64 (noise seeded per image
  name, :func:`zoo.data.degrade.image_seed`); a sub-pixel SR model gets the low-res image.
* Scores: :func:`zoo.metrics.protocol_metrics` of the output as it is, without clipping
  (SR rounds to uint8, which clips; a denoiser's overshoot counts against it).
"""

import numpy as np

from zoo.data.degrade import bicubic_degrade, image_seed
from zoo.data.io import read_folder, to_float
from zoo.data.resize import modcrop
from zoo.data.tasks import degrade, get_task
from zoo.metrics import protocol_metrics

__all__ = ["input_mode", "evaluation_pairs", "input_image", "score", "mean_scores"]


def input_mode(info, task):
    """Colour convention of a model's data: RGB models get RGB; else the task's (gray for
    denoising, Y for SR and JPEG).  A colour task needs an RGB model: a clear error otherwise."""
    mode = get_task(task).mode
    if mode == "RGB" and info.input != "RGB":
        raise ValueError(f"task {task!r} works on colour images: {info.name} takes {info.input} "
                         "input; use a model with RGB input (zoo list: input RGB)")
    return "RGB" if info.input == "RGB" else mode


def _references(data, task, level, mode):
    """``(name, float64 reference)`` of every image of ``data`` (folders or ``(name, array)``)."""
    if isinstance(data, (list, tuple)) and data and isinstance(data[0], tuple):
        named = [(name, np.asarray(image, np.float64)) for name, image in data]
    else:
        named = [(name, to_float(image, np.float64))
                 for name, image in read_folder(data, mode=mode, dtype="uint8")]
    names = [name for name, _ in named]
    if len(set(names)) < len(names):
        raise ValueError(f"duplicate image names in {data}: results are keyed by name")
    return [(name, modcrop(image, level) if task == "sr" else image) for name, image in named]


def evaluation_pairs(data, task, level, *, mode=None, sub_pixel=False, seed=0):
    """The test set as ``(name, degraded, clean)`` float64 triples (SPEC §4).

    ``data``: a folder, a list of folders, or a list of ``(name, HxWxC array in [0, 1])`` (used
    as they are).  ``mode``: colour convention of the model's input (default: the task's,
    the task's ``mode``).  ``degraded`` is what the model takes: the low-res image for a
    ``sub_pixel`` SR model, else the degraded image at the clean size.
    """
    pairs = []
    for name, clean in _references(data, task, level, mode or get_task(task).mode):
        if task == "sr" and sub_pixel:
            degraded = bicubic_degrade(clean, level, upsample=False)
        else:
            degraded = degrade(clean, task, level, seed=image_seed(name, seed))
        pairs.append((name, degraded, clean))
    return pairs


def input_image(degraded, clean, task, level):
    """The degraded image at the clean size: the papers' "Bicubic"/"JPEG"/noisy column scores it."""
    if degraded.shape == clean.shape:
        return degraded
    return bicubic_degrade(clean, level, upsample=True)


def score(output, clean, task, level):
    """``{"psnr", "ssim"}`` of a model output against the reference, output taken as it is."""
    return protocol_metrics(np.asarray(output, np.float64), clean, task, level)


def mean_scores(rows):
    """Mean of each key over a list of score dicts."""
    return {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}
