""":func:`export`: load, rewrite, calibrate (or fine-tune), convert, validate, time, write the
file and its card atomically.
"""

import contextlib
import os
import sys
import time
from pathlib import Path

import keras

from zoo import models
from zoo.checkpoint import load_model, model_info
from zoo.data.demo import demo_images
from zoo.data.tasks import TASKS, check_levels, get_task
from zoo.params import count_params
from zoo.protocol import evaluation_pairs, input_mode
from zoo.restore import output_scale
from zoo.export.calibrate import calibration_count, calibration_inputs, fine_tune_quantized
from zoo.export.card import (card_path, describe_data, machine, rounded, tensor_meaning,
                             tensor_spec, write_card)
from zoo.export.conversion import convert, op_counts
from zoo.export.gpu_rewrites import TransposedConvShuffle, gpu_rewrite
from zoo.export.model import inference_model, model_flops
from zoo.export.rewrites import (equalisable_units, integer_form, xunit_applied, xunit_notes,
                                 xunit_options)
from zoo.export.runtime import LiteRT, fastest_runtime, gpu_delegate, measure_latency
from zoo.export.settings import (AGREES_DB, CALIBRATED, CALIBRATION_SAMPLES, DEFAULT_XNNPACK,
                                 GATE_CLIP, LATENCY_RUNS, LATENCY_SIZES, LATENCY_THREADS, MODES,
                                 QAT_LEARNING_RATE, RESIZED_MARGIN_DB, XUNIT_BLOCK, XUNIT_SPLIT)
from zoo.export.validate import (compare, crop_pairs, resizable_check, simulated_agreement,
                                 summarise)


def _task_and_level(info, task, level, ratio):
    task = get_task(task or next((t for t in info.tasks if t in TASKS), "denoise")).name
    if level is None:
        level = ratio if ratio > 1 else get_task(task).default_level
    level = check_levels(task, level)[0]
    if ratio > 1 and (task != "sr" or level != ratio):
        raise ValueError(f"{info.name} is a x{ratio} sub-pixel SR model: use task 'sr' "
                         f"with level {ratio}")
    return task, level


def _batch_norms(model):
    return [layer for layer in model.layers if type(layer) is keras.layers.BatchNormalization]


def _check_out(out):
    out = Path(out)
    if out.suffix != ".tflite":
        raise ValueError(f"the output file must end in .tflite, got {str(out)!r}")
    return out


@contextlib.contextmanager
def _phase(timings, name):
    """Announces a phase of the export on stderr and adds its wall time to ``timings``."""
    print(f"zoo export: {name} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    yield
    timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - start, 1)


def export(model, out, *, mode="float32", weights=None, overrides=None, task=None, level=None,
           input_shape=None, io_dtype="int8", calibration_data=None,
           calibration_samples=CALIBRATION_SAMPLES,
           val_data=None, val_limit=0, allow_select_ops=False, latency_sizes=LATENCY_SIZES,
           latency_threads=LATENCY_THREADS, latency_runs=LATENCY_RUNS, latency_every=False,
           gate_clip=GATE_CLIP,
           xunit_split=None, xunit_block=None, qat_steps=0, qat_learning_rate=QAT_LEARNING_RATE,
           seed=0):
    """Exports a zoo model to ``out`` (a .tflite), validates it on LiteRT and writes its card.

    Args:
        model: registry name, or a built ``keras.Model``.
        out: the ``.tflite`` path; the card goes to ``<name>.card.yaml`` beside it.
        mode: ``"float32"``, ``"float16"``, ``"dynamic"``, ``"int8"`` or ``"int16x8"``.
        weights: ``.weights.h5`` (with the builder ``overrides``) or ``.keras``; None keeps the
            untrained initial weights.
        task, level: what the model restores (default: its first task, sigma 25 / x3 / q10; a
            sub-pixel model's scale) and so how validation and calibration degrade images.
        input_shape: ``(H, W)`` for a fixed input; None: resizable.
        io_dtype: ``"int8"`` or ``"uint8"``, the input/output type of an int8 model.
        calibration_data, val_data: folder(s) or ``[(name, image)]``; default: the built-in
            demo images (training split for calibration, the held-out two for validation).
        calibration_samples: int8 calibration patches (of CALIBRATION_PATCH squares: a larger
            fixed input gets as many pixels in fewer inputs, at least CALIBRATION_MIN).
        val_limit: validate on the first N images only (0: all).
        allow_select_ops: accept ops that need the Flex delegate (the file is then not
            validated: the Python LiteRT runtime has no Flex delegate).
        latency_sizes: square input sides to time (a fixed model is timed at its own size);
            empty to skip.  latency_threads, latency_runs: threads and timed runs per setting.
            latency_every: time LiteRT's builtin kernels at every size and thread count too
            (default: at the largest size with the most threads, enough to pick the faster
            runtime; on 2 cores the whole matrix is most of an int8 xDnCNN export's time).
        gate_clip: in int8 mode, xUnit gates read ``clip(d, -gate_clip, gate_clip)``
            (:func:`xunit_options`); None or 0: as trained.
        xunit_split: xUnit depthwise convs run as sums of pieces of at most ``xunit_split`` x
            ``xunit_split`` taps (:func:`xunit_options`); 0: whole; None: ``XUNIT_SPLIT[mode]``.
            int8 exports also run batch norms that do not follow a conv, the xUnits' own
            included, as 1x1 depthwise convs (:func:`norms_as_convs`).
        xunit_block: xUnit depthwise convs run as grouped convs on ``xunit_block`` square pixel
            blocks instead (:func:`xunit_options`); 0: not; None: ``XUNIT_BLOCK`` for int8
            with a fixed ``input_shape``, else 0.
        qat_steps: int8 only: fine-tune this many steps with int8 rounding simulated
            (:mod:`zoo.export.qat`) on the calibration images before converting (0: post-training
            quantization only).  qat_learning_rate: its first Adam step size (decayed
            to 0 on a cosine).

    Returns the card (a dict), also written as YAML.
    """
    start = time.perf_counter()
    out = _check_out(out)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    timings = {}
    with _phase(timings, "loading"):
        keras_model = load_model(model, weights, **dict(overrides or {}))
    info = models.info(model) if isinstance(model, str) else model_info(keras_model)
    keras_model = inference_model(keras_model)
    ratio = output_scale(keras_model)
    task, level = _task_and_level(info, task, level, ratio)
    colour = input_mode(info, task)
    upsampling = "sub-pixel" if ratio > 1 else "interpolated"
    shape = tuple(int(s) for s in input_shape) if input_shape else None
    if shape is not None and (len(shape) != 2 or min(shape) < 1):
        raise ValueError(f"input_shape is (H, W) with positive sides, got {input_shape!r}")
    if qat_steps and mode != "int8":
        raise ValueError(f"quantization-aware fine-tuning (qat_steps) is for int8 exports, "
                         f"not {mode}")

    notes = []
    xunit_split = XUNIT_SPLIT.get(mode) if xunit_split is None else xunit_split
    if xunit_block is None:
        xunit_block = XUNIT_BLOCK if mode == "int8" and shape else 0
    calibration = None
    if mode in CALIBRATED:
        with _phase(timings, "calibration inputs"):
            calibration = calibration_inputs(
                calibration_data or demo_images(colour, split="train"), task=task, level=level,
                mode=colour, upsampling=upsampling, ratio=ratio, input_shape=shape,
                samples=calibration_count(calibration_samples, shape), seed=seed)
        with _phase(timings, "scale equalisation"):      # and the other exact integer rewrites
            converted = integer_form(keras_model, calibration, mode=mode, gate_clip=gate_clip,
                                     split=xunit_split, block=xunit_block)
    else:
        converted = xunit_options(keras_model, split=xunit_split, block=xunit_block)
    applied = xunit_applied(converted) if converted is not keras_model else {}
    notes += xunit_notes(applied)
    count = len(equalisable_units(keras_model)) if mode in CALIBRATED else 0
    if count:
        applied["equalised_xunits"] = count
        notes.append(f"{count} xUnit(s) with per-channel scales equalised on the calibration "
                     "inputs (exact: the batch norms and convs around them divide them out)")
    if mode == "int8":
        norms = {layer.name for layer in _batch_norms(keras_model)}
        kept = {layer.name for layer in converted.layers}
        # the standalone batch norms now 1x1 convs, and the xUnits' own
        count = (len(norms & kept)
                 + sum(getattr(layer, "pointwise_norm", False) for layer in converted.layers))
        if count:
            applied["pointwise_batch_norms"] = count
            notes.append(f"{count} batch norm(s) run as 1x1 depthwise convs (exact): per-channel "
                         "int8 weights instead of a multiply by constants on one 8-bit range")
        if norms - kept:
            applied["batch_norms_folded_into_convs"] = len(norms - kept)
            notes.append(f"{len(norms - kept)} batch norm(s) right after a conv folded into it "
                         "(exact; the converter would do the same)")
    if mode == "float16":     # the GPU delegate's mode: keep the graph in its op table
        rewritten = gpu_rewrite(converted)
        if rewritten is not converted:
            count = sum(isinstance(layer, TransposedConvShuffle) for layer in rewritten.layers)
            applied["transposed_conv_shuffles"] = count
            notes.append(f"{count} pixel shuffle(s) run as transposed convs with one-hot kernels "
                         "(exact), for the GPU delegate, which has no DEPTH_TO_SPACE")
            converted = rewritten
    simulated, qat_card = None, None
    if qat_steps:
        data = calibration_data or demo_images(colour, split="train")
        with _phase(timings, "quantization-aware fine-tuning"):
            simulated, qat_card = fine_tune_quantized(
                converted, calibration, data, task=task, level=level, mode=colour,
                upsampling=upsampling, ratio=ratio, steps=qat_steps,
                learning_rate=qat_learning_rate, seed=seed)
        qat_card["data"] = describe_data(calibration_data,
                                          "built-in demo images (training split)")
        seconds = timings["quantization-aware fine-tuning"]
        notes.append(f"quantization-aware fine-tuning: {qat_steps} steps in {seconds:.0f} s; "
                     "activation ranges and weights from it (the converter reads its FakeQuant "
                     "ranges)")
        if not calibration_data:    # README, "Quantization-aware fine-tuning"
            notes.append(f"quantization-aware fine-tuning on the {len(data)} built-in demo "
                         "photos; the task's training set (--calibration, e.g. BSD400 for "
                         "denoising, T91 for SR) gives smaller drops (README, int8)")
        converted = simulated
    # the converter calibrates on the inputs itself unless FakeQuant ops carry the ranges
    calibrating = calibration is not None and simulated is None
    with _phase(timings, "conversion" + (" and calibration" if calibrating else "")):
        content, graph = convert(converted, mode, input_shape=shape, calibration=calibration,
                                 io_dtype=io_dtype, allow_select_ops=allow_select_ops)
    if mode in CALIBRATED and graph.float_ops:
        notes.append(f"float ops remain in the {mode} graph: {op_counts(graph.float_ops)}")
    if mode == "int16x8":
        notes.append("int16x8 runs on LiteRT's reference kernels only (XNNPACK and the GPU "
                     "delegate do not take int16 activations)")

    numerics, resizable, latency = {"validated": False}, {"works": None}, []
    if graph.flex_ops:
        notes.append("not validated: the Python LiteRT runtime cannot run Flex ops")
    else:
        if latency_sizes:
            sizes = [shape] if shape else [(s, s) for s in latency_sizes]
            with _phase(timings, "latency"):
                latency = measure_latency(content, sizes, latency_threads, latency_runs,
                                          flops=lambda h, w: model_flops(keras_model, h, w),
                                          every=latency_every)
        runtime = fastest_runtime(latency)["xnnpack"] if latency else DEFAULT_XNNPACK
        pairs = evaluation_pairs(val_data or demo_images(colour, split="val"), task, level,
                                 mode=colour, sub_pixel=upsampling == "sub-pixel", seed=seed)
        pairs = pairs[: val_limit or None]
        if shape:
            cropped = crop_pairs(pairs, shape, ratio)
            if len(cropped) < len(pairs):
                notes.append(f"validated on {len(cropped)} of {len(pairs)} images: the others "
                             f"are smaller than the {shape[0]}x{shape[1]} input")
            pairs = cropped
        with _phase(timings, "validation"):
            runner = LiteRT(content, xnnpack=runtime)
            rows = compare(runner, keras_model, pairs, task, level)
            numerics = {"validated": True, "xnnpack": runtime, **summarise(rows),
                        "per_image": rows}
            if simulated is not None:
                numerics["fake_quant"] = simulated_agreement(simulated, runner, pairs, task,
                                                             level)
        # resized runs must agree with Keras as well as the file does at the image's own size
        # (within RESIZED_MARGIN_DB), or to AGREES_DB
        agrees = min(AGREES_DB, numerics["worst_psnr_tflite_vs_keras"] - RESIZED_MARGIN_DB)
        with _phase(timings, "resized inputs"):
            resizable = resizable_check(content, keras_model, fixed=shape is not None,
                                        image=pairs[0][1], agrees_db=agrees)
    lite = LiteRT(content)
    with _phase(timings, "GPU delegate check"):
        gpu = gpu_delegate(content, graph)

    card = {
        "model": info.name,
        "paper": info.paper,
        "task": task,
        "level": level,
        "mode": mode,
        "file": {"name": out.name, "size_bytes": len(content),
                 "size_mb": round(len(content) / 2**20, 3)},
        "weights": str(weights) if weights is not None else None,
        "overrides": dict(overrides or {}),
        "export_options": applied,
        "parameters": {c: count_params(keras_model, c) for c in ("paper", "kernels", "keras")},
        "flops": {"per_input_pixel": model_flops(keras_model, 64, 64) / 64**2,
                  "counted_at": [64, 64], "rule": "2 x multiply-adds of convolutions and matmuls"},
        "input": tensor_spec(lite.input, tensor_meaning(colour, task, level, ratio, "input")),
        "output": tensor_spec(lite.output, tensor_meaning(colour, task, level, ratio, "output")),
        "resizable": rounded(resizable),
        "graph": {"builtin_only": graph.builtin_only, "ops": graph.ops,
                  "flex_ops": graph.flex_ops, "custom_ops": graph.custom_ops},
        "numerics": rounded(numerics),
        "latency": {"unit": "ms after one warm-up run", "results": latency,
                    "default_runtime": fastest_runtime(latency) if latency else None},
        "gpu_delegate": gpu,
        "notes": notes,
        "machine": machine(),
        "export_seconds": {"total": round(time.perf_counter() - start, 1), **timings},
    }
    if qat_card is not None:
        card["quantization_aware"] = qat_card
    if mode in CALIBRATED:
        card["graph"]["float_ops"] = graph.float_ops
        card["calibration"] = {
            "samples": len(calibration), "patch": list(calibration[0].shape[1:3]),
            "data": describe_data(calibration_data, "built-in demo images (training split)")}

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_bytes(content)
        write_card(card_path(out), card)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return card
