"""TFLite export for LiteRT (Android): float32, float16, dynamic-range and full-integer models.

    export("xdncnn", "xdncnn_int8.tflite", weights="runs/xdncnn/best.keras", mode="int8")

Conversion path: the Keras model is written as a SavedModel with a fixed ``(1, H, W, C)`` or a
resizable ``(1, None, None, C)`` input signature (its inference function and variables alone,
half the time of ``model.export(format="tf_saved_model")``) and converted by
``tf.lite.TFLiteConverter.from_saved_model``.  (``from_concrete_functions`` given the Keras model
silently yields a NaN model under Keras 3: it tracks no ``tf.Variable``.)  Modes:

- ``float32``: weights and arithmetic in float32.
- ``float16``: float16 weights (half the file); CPU kernels dequantize them to float32 at load,
  the GPU delegate computes in float16.
- ``dynamic``: dynamic-range quantization: int8 weights, activations quantized on the fly.
- ``int8``: full-integer quantization, int8 (or uint8) input and output, activation ranges
  calibrated on degraded patches drawn from the task's own ``tf.data`` pipeline
  (``zoo.data.pipeline.training_dataset``) on the built-in or given images, or with ``qat_steps``
  learned with the weights by quantization-aware fine-tuning (``zoo.export.qat``).
- ``int16x8``: int8 weights and int16 activations, int16 input and output, calibrated as int8
  (TFLite's mode for image restoration).  Only LiteRT's reference kernels run it: no XNNPACK,
  no GPU delegate.

Checks: the file uses LiteRT's builtin ops only (ops that would need the Flex / SELECT_TF_OPS
delegate fail the export with their list, unless ``allow_select_ops``), and an int8 graph is
searched for float islands (ops that read or write float tensors), which are reported.

Validation on the LiteRT interpreter (``ai_edge_litert``): the .tflite and the Keras model restore
the validation images; the card gets the PSNR of TFLite vs Keras, PSNR/SSIM of each against the
clean image under the SPEC §4 protocol, the drop caused by quantization, the file size, and the
median latency at 256x256 and 512x512 with 1 and 2 threads, with and without XNNPACK.  Everything
goes into ``<name>.card.yaml`` beside ``<name>.tflite``; both are written through temporary files,
so a failed export leaves no partial file.

The package follows the export's way: :mod:`~zoo.export.model` (load, inference model, FLOPs),
:mod:`~zoo.export.rewrites` (exact graph rewrites: xUnit forms, scale equalisation, batch norms
as 1x1 convs) and :mod:`~zoo.export.gpu_rewrites`, :mod:`~zoo.export.calibrate` and
:mod:`~zoo.export.qat` (activation ranges), :mod:`~zoo.export.conversion` (converter, flatbuffer
inspection), :mod:`~zoo.export.runtime` (LiteRT runner, latency, GPU delegate),
:mod:`~zoo.export.validate` (SPEC §4 scores via :mod:`zoo.protocol`), :mod:`~zoo.export.card`,
and :mod:`~zoo.export.exporter` (:func:`export`, which runs them in order).
:mod:`~zoo.export.settings` holds the defaults and imports nothing heavy (the CLI reads it);
the names below load their module (TensorFlow, LiteRT) on first use.
"""

import importlib

_API = {
    # settings
    "AGREES_DB": "settings", "CALIBRATED": "settings", "CALIBRATION_MIN": "settings",
    "CALIBRATION_PATCH": "settings", "CALIBRATION_SAMPLES": "settings",
    "DEFAULT_XNNPACK": "settings",
    "GATE_CLIP": "settings", "IO_DTYPES": "settings", "LATENCY_SIZES": "settings",
    "LATENCY_RUNS": "settings", "LATENCY_THREADS": "settings", "MODES": "settings",
    "QAT_BATCH": "settings", "QAT_LEARNING_RATE": "settings", "QAT_PATCH": "settings",
    "QAT_STEPS": "settings", "RESIZED_MARGIN_DB": "settings", "RESIZE_PROBE": "settings",
    "SLOW_BUILTIN": "settings", "XUNIT_BLOCK": "settings", "XUNIT_SPLIT": "settings",
    # card
    "card_path": "card", "card_runtime": "card", "cpu_name": "card", "describe_data": "card",
    "machine": "card", "read_card": "card", "rounded": "card", "tensor_meaning": "card",
    "tensor_spec": "card", "write_card": "card",
    # model
    "inference_model": "model", "model_flops": "model",
    # conversion
    "GraphReport": "conversion", "convert": "conversion", "inspect_graph": "conversion",
    "op_counts": "conversion",
    # calibrate
    "calibration_count": "calibrate", "calibration_inputs": "calibrate",
    "fine_tune_quantized": "calibrate",
    # runtime
    "GPU_DELEGATE_OPS": "runtime", "LiteRT": "runtime", "fastest_runtime": "runtime",
    "gpu_delegate": "runtime", "measure_latency": "runtime",
    # rewrites
    "equalisable_units": "rewrites", "equalise_scales": "rewrites", "integer_form": "rewrites",
    "norms_as_convs": "rewrites", "readers": "rewrites",
    "xunit_applied": "rewrites", "xunit_notes": "rewrites", "xunit_options": "rewrites",
    # gpu_rewrites
    "TransposedConvShuffle": "gpu_rewrites", "gpu_rewrite": "gpu_rewrites",
    "shuffle_kernel": "gpu_rewrites",
    # validate
    "check_resizable": "validate", "compare": "validate", "crop_pairs": "validate",
    "resizable_check": "validate", "simulated_agreement": "validate", "summarise": "validate",
    # exporter
    "export": "exporter", "load_model": "exporter", "model_info": "exporter",
}
__all__ = sorted(_API)


def __getattr__(name):
    """PEP 562: ``zoo.export.<name>`` imports the one module that defines it, on first use."""
    if name not in _API:
        raise AttributeError(f"module 'zoo.export' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"zoo.export.{_API[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_API))
