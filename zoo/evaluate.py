"""Protocol tables over test sets (SPEC §4)."""

import numpy as np
from tqdm.auto import tqdm

from .data.degrade import TASK_MODE, degrade, image_seed
from .data.io import list_images, read_image, to_float
from .data.resize import modcrop
from .metrics import protocol_metrics


def _clean(path, task, level):
    """The protocol's reference: 8-bit gray (denoise) or MATLAB Y, as float64; modcropped for SR."""
    clean = to_float(read_image(path, mode=TASK_MODE[task], dtype="uint8"), np.float64)
    return modcrop(clean, level) if task == "sr" else clean


def baseline(task, level, data, *, seed=0):
    """PSNR/SSIM of the degraded input itself: the "Bicubic"/"JPEG"/noisy columns of the papers.

    Parameters
    ----------
    task : "denoise", "sr" or "jpeg".
    level : sigma (0-255 scale), scale factor or JPEG quality.
    data : a folder or a list of folders of test images.
    seed : base seed of the noise; each image's noise is seeded from ``seed`` and its file name,
        so results do not depend on the order or number of images.

    Returns
    -------
    ``{"images": {name: {"psnr": .., "ssim": ..}}, "mean": {"psnr": .., "ssim": ..}}``, names
    being file stems (which must be unique).
    """
    files = list_images(data)
    names = [path.stem for path in files]
    if len(set(names)) < len(names):
        raise ValueError(f"duplicate image names in {data}: results are keyed by file stem")
    images = {}
    for path in tqdm(files, desc=f"baseline {task} {level}", unit="img"):
        clean = _clean(path, task, level)
        degraded = degrade(clean, task, level, seed=image_seed(path.stem, seed))
        images[path.stem] = protocol_metrics(degraded, clean, task, level)
    mean = {key: float(np.mean([m[key] for m in images.values()])) for key in ("psnr", "ssim")}
    return {"images": images, "mean": mean}


def markdown_table(result):
    """A Markdown table of a :func:`baseline` result: one row per image, then the mean."""
    rows = ["| image | PSNR (dB) | SSIM |", "|---|---:|---:|"]
    for name, m in result["images"].items():
        rows.append(f"| {name} | {m['psnr']:.2f} | {m['ssim']:.4f} |")
    rows.append(f"| **mean** | **{result['mean']['psnr']:.2f}** | **{result['mean']['ssim']:.4f}** |")
    return "\n".join(rows)
