"""Where an integer graph gets its activation ranges: calibration patches from the task's own
``tf.data`` pipeline, or quantization-aware fine-tuning (:mod:`zoo.export.qat`).
"""

import numpy as np

from zoo.export import qat
from zoo.data.pipeline import named_images, training_dataset
from zoo.export.settings import CALIBRATION_MIN, CALIBRATION_PATCH, QAT_BATCH, QAT_LEARNING_RATE, QAT_PATCH, QAT_STEPS


def calibration_inputs(data, *, task, level, mode, upsampling="interpolated", ratio=1,
                       input_shape=None, samples=128, seed=0):
    """``samples`` degraded ``(1, H, W, C)`` patches from the task's training pipeline.

    ``input_shape`` is the model's fixed input (default: ``CALIBRATION_PATCH`` squares); the
    patches are cut as the training pipeline cuts them (sub-pixel pairs at the low resolution),
    from the images at least that large, or if there is none, at the largest size the images
    give and mirror-padded to the input.
    """
    height, width = input_shape or (CALIBRATION_PATCH, CALIBRATION_PATCH)
    images = named_images(data, mode)
    # a fixed input larger than every image gets patches of the largest size there is, mirrored;
    # super-resolution pairs are first cropped to a multiple of the scale
    multiple = int(level) if task == "sr" else 1
    sides = [min(image.shape[:2]) // multiple * multiple for _, image in images]
    patch = min(max(height, width) * ratio, max(sides) // ratio * ratio)
    images = [pair for pair, side in zip(images, sides) if side >= patch]
    dataset = training_dataset(images, task=task, levels=[level], patch_size=patch,
                               batch_size=1, mode=mode, upsampling=upsampling, seed=seed,
                               shuffle_buffer=max(int(samples), 1))
    return [_mirror_to(degraded.numpy(), height, width) for degraded, _ in dataset.take(samples)]


def calibration_count(samples, shape):
    """Inputs to calibrate on: ``samples`` patches' worth of pixels, at least CALIBRATION_MIN
    inputs, for a fixed input larger than the patches (calibration runs LiteRT's reference
    kernels: a 512x512 xDnCNN with block xUnits takes ~15 s an input)."""
    if shape is None:
        return samples
    pixels = samples * CALIBRATION_PATCH ** 2
    return min(samples, max(CALIBRATION_MIN, -(-pixels // (shape[0] * shape[1]))))


def _mirror_to(batch, height, width):
    """``batch`` cropped, or mirror-padded, to ``height x width``."""
    pad_h, pad_w = max(height - batch.shape[1], 0), max(width - batch.shape[2], 0)
    if pad_h or pad_w:
        batch = np.pad(batch, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="symmetric")
    return batch[:, :height, :width]


def fine_tune_quantized(model, calibration, data, *, task, level, mode, upsampling="interpolated",
                        ratio=1, steps=QAT_STEPS, learning_rate=QAT_LEARNING_RATE,
                        patch=QAT_PATCH, batch=QAT_BATCH, seed=0):
    """``(simulated model, card)``: :func:`zoo.export.qat.quantization_model` of an export-ready
    ``model``, its ranges calibrated on ``calibration``, fine-tuned ``steps`` steps to reproduce
    ``model`` on degraded ``patch``-square patches of ``data`` (the task's pipeline)."""
    simulated = qat.calibrate(qat.quantization_model(model), calibration)
    dataset = training_dataset(data, task=task, levels=[level], patch_size=patch * ratio,
                               batch_size=batch, mode=mode, upsampling=upsampling, seed=seed)
    history = qat.fine_tune(simulated, model, dataset, steps, learning_rate)
    return simulated, {"steps": int(steps), "learning_rate": learning_rate,
                       "schedule": "cosine decay to 0 over the steps",
                       "ranges": "learned from the calibrated min/max (LSQ gradient); the input "
                                 "and output ranges fixed, covering [0, 1] and the calibrated "
                                 "min/max", "batch": batch,
                       "patch": patch * ratio, "loss": "MSE to the float model's output",
                       "final_loss": float(history.history["loss"][-1]),
                       "fake_quant_layers": len(qat.fake_quants(simulated))}
