"""A small demo set that needs no download: real photographs bundled with scikit-image.

Only images stored inside the ``skimage`` package are used (``skimage.data`` fetches the others
from the network): five colour and three gray photographs, 300-741 px. Synthetic, binary,
texture, text, microscopy and astronomy images are left out.
"""

import os
from pathlib import Path

import numpy as np
import skimage.data

from .io import convert_mode, to_float, write_image

__all__ = ["DEMO_IMAGES", "cache_dir", "demo_images", "demo_folder"]

# name -> loader returning uint8 HxW (gray) or HxWx3 (colour).
DEMO_IMAGES = {
    "astronaut": skimage.data.astronaut,
    "camera": skimage.data.camera,
    "chelsea": skimage.data.chelsea,
    "coffee": skimage.data.coffee,
    "coins": skimage.data.coins,
    "moon": skimage.data.moon,
    "motorcycle": lambda: skimage.data.stereo_motorcycle()[0],
    "rocket": skimage.data.rocket,
}
DEMO_MODES = ("gray", "Y", "RGB")
# Held out from training when the demo set is used for both (coffee: a colour one for RGB).
DEMO_VALIDATION = ("camera", "coffee")


def _uint8(name):
    img = np.asarray(DEMO_IMAGES[name]())
    return img[..., None] if img.ndim == 2 else img


def demo_images(mode="gray", split=None):
    """``[(name, float32 HxWxC in [0, 1]), ...]`` sorted by name.

    ``mode`` "gray" (MATLAB ``rgb2gray`` of colour photos) or "Y" (their BT.601 luma, rounded to
    8 bits as MATLAB does) gives all eight images with ``C = 1``; "RGB" gives the five colour
    ones.  ``split`` "val" keeps only :data:`DEMO_VALIDATION`, "train" only the others.
    """
    if mode not in DEMO_MODES:
        raise ValueError(f"mode must be one of {DEMO_MODES}, got {mode!r}")
    if split not in (None, "train", "val"):
        raise ValueError(f"split must be None, 'train' or 'val', got {split!r}")
    images = []
    for name in sorted(DEMO_IMAGES):
        if split is not None and (name in DEMO_VALIDATION) != (split == "val"):
            continue
        img = _uint8(name)
        if mode == "RGB" and img.shape[-1] != 3:
            continue
        images.append((name, to_float(convert_mode(img, mode), np.float32)))
    return images


def cache_dir():
    """``$ZOO_CACHE`` if set, else ``~/.cache/restoration-zoo``."""
    return Path(os.environ.get("ZOO_CACHE") or Path.home() / ".cache" / "restoration-zoo")


def demo_folder(mode="gray"):
    """Write :func:`demo_images` once as 8-bit PNGs into ``cache_dir()/demo/<mode>``; return it.

    Existing files are kept, and each file is written atomically, so concurrent callers are safe.
    """
    folder = cache_dir() / "demo" / mode
    for name, img in demo_images(mode):
        path = folder / f"{name}.png"
        if not path.exists():
            write_image(path, img)
    return folder
