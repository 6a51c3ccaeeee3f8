"""Validation of an exported file against its Keras model under the SPEC §4 protocol
(:mod:`zoo.protocol`): per-image scores, the quantization drop, resized inputs.
"""

import numpy as np

from zoo.metrics import psnr
from zoo.protocol import input_image, score
from zoo.restore import predict
from zoo.pretrained import describe_error
from zoo.export.settings import AGREES_DB, RESIZE_PROBE
from zoo.export.conversion import convert
from zoo.export.runtime import LiteRT


def compare(runner, model, pairs, task, level):
    """Restores each ``(name, degraded, clean)`` pair with the .tflite and Keras: per-image rows."""
    rows = []
    for name, degraded, clean in pairs:
        reference = predict(model, degraded)
        lite = runner(degraded)
        keras_metrics = score(reference, clean, task, level)
        lite_metrics = score(lite, clean, task, level)
        row = {"image": name, "input_size": list(degraded.shape[:2]),
               "max_abs_diff": float(np.abs(lite - reference).max()),
               "psnr_tflite_vs_keras": psnr(lite, reference, data_range=1.0),
               "keras": keras_metrics, "tflite": lite_metrics}
        row["degraded"] = score(input_image(degraded, clean, task, level), clean, task, level)
        rows.append(row)
    return rows


def summarise(rows):
    """Means over images (the worst image for TFLite vs Keras) and the quantization drop."""
    mean = lambda key, metric: float(np.mean([r[key][metric] for r in rows]))
    summary = {"images": len(rows),
               "max_abs_diff_vs_keras": max(r["max_abs_diff"] for r in rows),
               "worst_psnr_tflite_vs_keras": min(r["psnr_tflite_vs_keras"] for r in rows)}
    for key in ("keras", "tflite", "degraded"):
        if all(key in r for r in rows):
            summary[key] = {"psnr": mean(key, "psnr"), "ssim": mean(key, "ssim")}
    summary["quantization_drop_db"] = summary["keras"]["psnr"] - summary["tflite"]["psnr"]
    return summary


def crop_pairs(pairs, input_shape, ratio):
    """Centre crops of the pairs at a fixed input size (the clean crop ``ratio`` times larger)."""
    height, width = input_shape
    cropped = []
    for name, degraded, clean in pairs:
        top, left = (degraded.shape[0] - height) // 2, (degraded.shape[1] - width) // 2
        if top < 0 or left < 0:
            continue
        cropped.append((name, degraded[top:top + height, left:left + width],
                        clean[top * ratio:(top + height) * ratio,
                              left * ratio:(left + width) * ratio]))
    if not cropped:
        raise ValueError(f"no validation image is at least {height}x{width} (the input shape)")
    return cropped


def check_resizable(content, model, sizes=RESIZE_PROBE, image=None, agrees_db=AGREES_DB):
    """Runs a resizable .tflite at each ``(H, W)`` of ``sizes`` and compares it with Keras.

    The inputs are top-left crops of ``image`` (a degraded ``HxWxC`` input, so that an int8
    file sees what it was calibrated for) where it is large enough, else uniform noise.
    ``works``: it ran, the output has the Keras shape, is finite and agrees with Keras to
    ``agrees_db`` dB PSNR (an int8 file of a model with random weights agrees less with Keras
    at any size: the export passes what it measured at the validation size, less a margin).
    """
    runner = LiteRT(content)
    if not runner.resizable:
        return {"works": False, "error": "the input shape is fixed"}
    channels = int(runner.input["shape"][3])
    rng = np.random.default_rng(0)
    result = {"sizes": [list(s) for s in sizes], "psnr_vs_keras": [], "max_abs_diff": 0.0}
    try:
        for height, width in sizes:
            if image is not None and min(image.shape[0] - height, image.shape[1] - width) >= 0:
                x = np.asarray(image[:height, :width], np.float32)
            else:
                x = rng.random((height, width, channels), dtype=np.float32)
            lite, reference = runner(x), predict(model, x)
            if lite.shape != reference.shape:
                raise ValueError(f"output {lite.shape} where Keras gives {reference.shape}")
            result["psnr_vs_keras"].append(psnr(lite, reference, data_range=1.0))
            result["max_abs_diff"] = max(result["max_abs_diff"],
                                         float(np.abs(lite - reference).max()))
    except (RuntimeError, ValueError) as error:
        return {"works": False, **result, "error": describe_error(error)}
    result["works"] = bool(np.isfinite(result["max_abs_diff"])
                           and min(result["psnr_vs_keras"]) >= agrees_db)
    return {"works": result.pop("works"), **result}


def simulated_agreement(simulated, runner, pairs, task, level):
    """How well the fake-quantized Keras model predicts the int8 file: PSNR of one against the
    other (the worst image) and the mean protocol PSNR of the simulation."""
    versus, scores = [], []
    for _, degraded, clean in pairs:
        predicted = predict(simulated, degraded)
        versus.append(psnr(runner(degraded), predicted, data_range=1.0))
        scores.append(score(predicted, clean, task, level)["psnr"])
    return {"worst_psnr_vs_tflite": float(min(versus)), "psnr": float(np.mean(scores))}


def resizable_check(content, model, fixed, image=None, agrees_db=AGREES_DB):
    """:func:`check_resizable` of the file, or for a fixed-shape export, of a float32 resizable
    conversion of the same model (does the model work resizable at all?)."""
    if not fixed:
        return check_resizable(content, model, image=image, agrees_db=agrees_db)
    try:
        probe, _ = convert(model, "float32")
    except ValueError as error:
        return {"exported": False, "float32_probe": {"works": False, "error": describe_error(error)}}
    return {"exported": False,
            "float32_probe": {**check_resizable(probe, model), "file_bytes": len(probe)}}
