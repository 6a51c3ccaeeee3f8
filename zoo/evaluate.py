"""Protocol tables over test sets (SPEC §4): the degraded input's numbers and a model's.

:func:`baseline` scores the degraded input itself (the papers' "Bicubic" and
"JPEG" columns); :func:`evaluate` scores a model on the very same inputs, so its
"input" columns equal the baseline's.
"""

from pathlib import Path

from tqdm.auto import tqdm

from .protocol import evaluation_pairs, input_image, input_mode, mean_scores, score

METRICS = ("psnr", "ssim")


def baseline(task, level, data, *, seed=0, mode=None):
    """PSNR/SSIM of the degraded input itself: the "Bicubic"/"JPEG"/noisy columns of the papers.

    Parameters
    ----------
    task : "denoise", "sr" or "jpeg".
    level : sigma (0-255 scale), scale factor or JPEG quality.
    data : a folder or a list of folders of test images.
    seed : base seed of the noise; each image's noise is seeded from ``seed`` and its file name,
        so results do not depend on the order or number of images.
    mode : colour convention of the clean images (default: gray for denoising, Y otherwise).

    Returns
    -------
    ``{"images": {name: {"psnr": .., "ssim": ..}}, "mean": {"psnr": .., "ssim": ..}}``, names
    being file stems (which must be unique).
    """
    result = evaluate(lambda degraded: degraded, task, level, data, seed=seed, mode=mode,
                      desc=f"baseline {task} {level}")
    keep = lambda m: {k: m[k] for k in METRICS}
    return {"images": {n: keep(m) for n, m in result["images"].items()}, "mean": keep(result["mean"])}


def evaluate(restore, task, level, data, *, seed=0, mode=None, sub_pixel=False, desc=None):
    """Scores ``restore`` (degraded HxWxC float64 -> restored, or a dict of outputs) on ``data``.

    The degraded inputs are exactly :func:`baseline`'s; a sub-pixel SR model gets
    the low-res image instead of its bicubic upscaling.  Outputs are scored as they
    are (no clipping), like the unclipped noisy inputs.  With a dict of outputs
    (MemNet's ``y`` and ``y_m``) every output is scored; ``y`` is the model's.

    Returns ``{"images": {name: {...}}, "mean": {...}}`` with ``psnr``/``ssim`` of
    the model, ``input_psnr``/``input_ssim`` of the degraded input and, for extra
    outputs, ``<output>_psnr``/``<output>_ssim``.
    """
    images = {}
    pairs = evaluation_pairs(data, task, level, mode=mode, sub_pixel=sub_pixel, seed=seed)
    for name, degraded, clean in tqdm(pairs, desc=desc or f"evaluate {task} {level}", unit="img"):
        restored = restore(degraded)
        outputs = restored if isinstance(restored, dict) else {"y": restored}
        row = {}
        for key, image in outputs.items():
            prefix = "" if key == "y" else f"{key}_"
            for metric, value in score(image, clean, task, level).items():
                row[prefix + metric] = value
        for metric, value in score(input_image(degraded, clean, task, level), clean, task,
                                   level).items():
            row[f"input_{metric}"] = value
        images[name] = row
    rows = list(images.values())
    return {"images": images, "mean": mean_scores(rows)}


def evaluate_model(model, info, task, levels, sets, *, seed=0, intermediate=False, **options):
    """:func:`evaluate` of a zoo model over sets x levels; ``options`` go to ``zoo.restore.predict``.

    Returns ``{"model": .., "task": .., "results": [{"set", "level", "images", "mean"}, ...]}``.
    """
    from .restore import predict

    mode = input_mode(info, task)
    sub_pixel = task == "sr" and info.upsampling == "sub-pixel"
    outputs = "all" if intermediate else "final"
    results = []
    for folder in sets:
        for level in levels:
            result = evaluate(lambda x: predict(model, x, outputs=outputs, **options), task, level,
                              folder, seed=seed, mode=mode, sub_pixel=sub_pixel,
                              desc=f"{Path(folder).name} {task} {level}")
            results.append({"set": Path(folder).name, "level": level, **result})
    return {"model": info.name, "task": task, "results": results}


def markdown_table(result):
    """A Markdown table of a :func:`baseline` result: one row per image, then the mean."""
    rows = ["| image | PSNR (dB) | SSIM |", "|---|---:|---:|"]
    for name, m in result["images"].items():
        rows.append(f"| {name} | {m['psnr']:.2f} | {m['ssim']:.4f} |")
    rows.append(f"| **mean** | **{result['mean']['psnr']:.2f}** | **{result['mean']['ssim']:.4f}** |")
    return "\n".join(rows)


def results_table(evaluation):
    """The papers' layout for :func:`evaluate_model`: set x level, input beside model (and y_m)."""
    first = evaluation["results"][0]["mean"]
    heads = sorted({k[:-5] for k in first if k.endswith("_psnr") and k != "input_psnr"},
                   key=lambda k: int(k.split("_")[-1]) if k.split("_")[-1].isdigit() else 0)
    header = ["set", "level", "degraded input", evaluation["model"]] + heads
    rows = ["| " + " | ".join(header) + " |", "|---|---:|" + "---:|" * (len(header) - 2)]
    for r in evaluation["results"]:
        m = r["mean"]
        cells = [r["set"], str(r["level"]), f"{m['input_psnr']:.2f} / {m['input_ssim']:.4f}",
                 f"{m['psnr']:.2f} / {m['ssim']:.4f}"]
        cells += [f"{m[h + '_psnr']:.2f} / {m[h + '_ssim']:.4f}" for h in heads]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n\n(PSNR dB / SSIM, SPEC §4 protocol)"
