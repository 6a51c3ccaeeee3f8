"""Keras -> ``.tflite`` through a lean SavedModel (``from_saved_model``; ``from_concrete_functions``
given a Keras 3 model silently yields a NaN model) and the flatbuffer inspection of the result.
"""

import collections
import dataclasses
import tempfile

import tensorflow as tf
from ai_edge_litert import schema_py_generated as schema

from zoo.export.qat import fake_quants
from zoo.export.settings import CALIBRATED, IO_DTYPES, MODES


_FLOAT_TYPES = {"FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16"}


_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


_TYPE_NAMES = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}


@dataclasses.dataclass
class GraphReport:
    """The operators of a .tflite file.

    Attributes:
        ops: op name -> count (builtin names, or the custom code of custom ops).
        flex_ops: the ops that need the Flex (SELECT_TF_OPS) delegate.
        custom_ops: other custom ops (need a custom op registration in the app).
        float_ops: ops reading or writing a float tensor; in a full-integer graph, the float
            islands (a DEQUANTIZE ... QUANTIZE stretch shows up as its ops and the two ends).
        int16_ops: ops reading or writing an int16 tensor (int16x8 activations).
    """

    ops: dict
    flex_ops: dict
    custom_ops: dict
    float_ops: dict
    int16_ops: dict = dataclasses.field(default_factory=dict)

    @property
    def builtin_only(self):
        return not self.flex_ops and not self.custom_ops


def inspect_graph(content):
    """A :class:`GraphReport` of the flatbuffer ``content``, read with LiteRT's schema."""
    model = schema.Model.GetRootAs(content, 0)
    ops, flex, custom, floating, int16 = (collections.Counter() for _ in range(5))
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            code = model.OperatorCodes(op.OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            if builtin == schema.BuiltinOperator.CUSTOM:
                name = code.CustomCode().decode()
                (flex if name.startswith("Flex") else custom)[name] += 1
            else:
                name = _OP_NAMES.get(builtin, f"BUILTIN_{builtin}")
            ops[name] += 1
            tensors = [op.Inputs(j) for j in range(op.InputsLength())]
            tensors += [op.Outputs(j) for j in range(op.OutputsLength())]
            types = {_TYPE_NAMES.get(graph.Tensors(t).Type()) for t in tensors if t >= 0}
            floating[name] += bool(types & _FLOAT_TYPES)
            int16[name] += "INT16" in types
    return GraphReport(*({k: v for k, v in sorted(c.items()) if v}
                         for c in (ops, flex, custom, floating, int16)))


def convert(model, mode="float32", *, input_shape=None, calibration=None, io_dtype="int8",
            allow_select_ops=False):
    """``(flatbuffer bytes, GraphReport)`` of a single-output Keras ``model`` in ``mode``.

    ``input_shape`` ``(H, W)`` fixes the input; ``None`` leaves height and width resizable
    (batch 1 either way).  ``calibration``: the float32 ``(1, H, W, C)`` inputs that calibrate
    an int8 model.  Ops outside LiteRT's builtin set raise a ``ValueError`` naming them unless
    ``allow_select_ops``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if io_dtype not in IO_DTYPES:
        raise ValueError(f"io_dtype must be one of {IO_DTYPES}, got {io_dtype!r}")
    channels = model.inputs[0].shape[-1]
    height, width = input_shape or (None, None)
    signature = tf.TensorSpec((1, height, width, channels), tf.float32)
    # Select TF ops are allowed in the conversion so that the ops needing them can be listed.
    supported = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    with tempfile.TemporaryDirectory(prefix="zoo-export-") as folder:
        _write_saved_model(model, folder, signature)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        if mode != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if mode == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if mode in CALIBRATED:
            if not calibration:
                raise ValueError(f"an {mode} conversion needs calibration inputs")
            # a quantization model (zoo.export.qat) carries its ranges in FakeQuant ops, which
            # the converter reads; it still asks for data, so one input is enough
            data = calibration[:1] if fake_quants(model) else calibration
            converter.representative_dataset = lambda: ([x] for x in data)
            # Builtin float kernels stay allowed so that a float island is reported, not fatal.
            supported.insert(0, tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if mode == "int8" else
                             tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8)
            io = tf.as_dtype(io_dtype) if mode == "int8" else tf.int16
            converter.inference_input_type = converter.inference_output_type = io
        converter.target_spec.supported_ops = supported
        content = converter.convert()
    report = inspect_graph(content)
    if report.flex_ops and not allow_select_ops:
        raise ValueError(f"{model.name} needs ops outside LiteRT's builtin set (Flex / "
                         f"SELECT_TF_OPS): {op_counts(report.flex_ops)}; rewrite them with builtin "
                         "ops, or pass --allow-select-ops (the app must then link the Flex "
                         "delegate)")
    return content, report


def _write_saved_model(model, folder, signature):
    """Write ``model``'s inference alone as a SavedModel: its variables and one
    ``serving_default`` signature (input ``args_0``, output ``output_0``).

    Half the time of ``model.export(format="tf_saved_model")`` (5 s against 10 s for xDnCNN
    here), which also traces and saves Keras' own endpoints. The module tracks the
    ``tf.Variable`` inside each Keras variable: tracking the Keras variables (or the model, as
    ``from_concrete_functions(..., model)`` does) leaves the weights out of the frozen graph,
    and the converter then yields a NaN model without error.
    """
    module = tf.Module()
    module.weights = [variable.value for variable in model.variables]

    def serve(args_0):
        return model(args_0, training=False)

    function = tf.function(serve, input_signature=[signature], autograph=False)
    tf.saved_model.save(module, folder,
                        signatures={"serving_default": function.get_concrete_function()})


def op_counts(ops):
    return ", ".join(f"{name} x{count}" for name, count in ops.items())
