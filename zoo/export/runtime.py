"""The LiteRT interpreter (``ai_edge_litert``): running a ``.tflite`` on float images, timing it
over thread and kernel settings, and checking it against the GPU delegate.
"""

import contextlib
import io
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from zoo.export.settings import DEFAULT_XNNPACK, LATENCY_RUNS, LATENCY_THREADS, SLOW_BUILTIN
from zoo.export.card import card_runtime
from zoo.export.conversion import op_counts, inspect_graph


# The ops LiteRT's GPU delegate runs, as its documentation lists them (float16 and float32;
# int8 graphs through its quantized-model support), plus DEQUANTIZE of float16 weights.
GPU_DELEGATE_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEQUANTIZE",
    "EXP", "FULLY_CONNECTED", "LOGICAL_AND", "LOGISTIC", "MAX_POOL_2D", "MAXIMUM", "MINIMUM",
    "MUL", "PAD", "PRELU", "RELU", "RELU6", "RESHAPE", "RESIZE_BILINEAR", "SOFTMAX",
    "STRIDED_SLICE", "SUB", "TRANSPOSE_CONV"})


class LiteRT:
    """A .tflite model on the LiteRT interpreter, called with a float ``HxWxC`` image.

    Quantized inputs and outputs are converted with the tensors' scale and zero point; a
    resizable model is resized to each image.  ``xnnpack=False`` runs LiteRT's builtin kernels
    (``OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES``); ``None`` takes the faster of the two
    as measured at export (the card beside a file), else ``DEFAULT_XNNPACK``.
    """

    def __init__(self, model, threads=2, xnnpack=None):
        if isinstance(model, (bytes, bytearray)):
            content = bytes(model)
        else:
            content = Path(model).read_bytes()
            xnnpack = card_runtime(model) if xnnpack is None else xnnpack
        self.xnnpack = DEFAULT_XNNPACK if xnnpack is None else bool(xnnpack)
        resolver = (OpResolverType.AUTO if self.xnnpack
                    else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.interpreter = Interpreter(model_content=content, num_threads=threads,
                                       experimental_op_resolver_type=resolver)
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.resizable = bool(np.any(self.input["shape_signature"][1:3] < 0))
        self.shape = None

    def prepare(self, height, width):
        """Sizes the input for ``height x width`` (a fixed model accepts its own size only)."""
        if self.shape == (height, width):
            return
        fixed = tuple(int(d) for d in self.input["shape"][1:3])
        if not self.resizable and fixed != (height, width):
            raise ValueError(f"this model takes {fixed[0]}x{fixed[1]} inputs only, "
                             f"got {height}x{width}")
        channels = int(self.input["shape"][3])
        self.interpreter.resize_tensor_input(self.input["index"], [1, height, width, channels])
        self.interpreter.allocate_tensors()
        self.shape = (height, width)

    def __call__(self, image):
        image = np.asarray(image, np.float32)
        self.prepare(*image.shape[:2])
        self.interpreter.set_tensor(self.input["index"], _quantize(image[None], self.input))
        self.interpreter.invoke()
        return _dequantize(self.interpreter.get_tensor(self.output["index"]), self.output)[0]

    def set_random_input(self, seed=0):
        height, width = self.shape
        x = np.random.default_rng(seed).random((1, height, width, int(self.input["shape"][3])))
        self.interpreter.set_tensor(self.input["index"],
                                    _quantize(x.astype(np.float32), self.input))

    def invoke(self):
        self.interpreter.invoke()


def _quantize(x, details):
    scale, zero_point = details["quantization"]
    dtype = details["dtype"]
    if not np.issubdtype(dtype, np.integer):
        return x.astype(dtype)
    limits = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), limits.min, limits.max).astype(dtype)


def _dequantize(q, details):
    scale, zero_point = details["quantization"]
    if not np.issubdtype(q.dtype, np.integer):
        return q.astype(np.float32)
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)


def measure_latency(content, sizes, threads=LATENCY_THREADS, runs=LATENCY_RUNS, flops=None,
                    every=False):
    """Median ``invoke()`` time of each (size, threads) with XNNPACK, after one warm-up run, and
    of LiteRT's builtin kernels: at the largest size with the most threads (enough to pick the
    faster runtime; ``every``: at every size and thread count too).

    A builtin-kernel setting whose warm-up run takes ``SLOW_BUILTIN`` times XNNPACK's median
    or more is recorded from that one run (xDnCNN with block xUnits on the reference kernels:
    8 s a run at 512x512; xDnCNN split: 3.9 s against 0.7 s).  ``flops``: a function ``(H, W) -> FLOPs`` to add the achieved GFLOP/s.
    """
    rows = []
    largest = max(sizes, key=lambda size: size[0] * size[1])
    for height, width in sizes:
        work = flops(height, width) if flops else None
        for count in threads:
            xnnpack_median = None
            builtin = every or ((height, width) == tuple(largest) and count == max(threads))
            for xnnpack in (True, False) if builtin else (True,):
                runner = LiteRT(content, threads=count, xnnpack=xnnpack)
                runner.prepare(height, width)
                runner.set_random_input()
                start = time.perf_counter()
                runner.invoke()
                times = [time.perf_counter() - start]
                if xnnpack or times[0] < SLOW_BUILTIN * xnnpack_median:
                    times = []
                    for _ in range(max(int(runs), 1)):
                        start = time.perf_counter()
                        runner.invoke()
                        times.append(time.perf_counter() - start)
                median = float(np.median(times))
                xnnpack_median = median if xnnpack else xnnpack_median
                row = {"input_size": [height, width], "threads": count, "xnnpack": xnnpack,
                       "median_ms": round(median * 1000, 2), "min_ms": round(min(times) * 1000, 2),
                       "runs": len(times)}
                if work:
                    row["gflops_per_s"] = round(work / median / 1e9, 2)
                rows.append(row)
    return rows


def fastest_runtime(rows):
    """The delegate choice that is faster at the largest size measured with the most threads."""
    largest = max(r["input_size"][0] * r["input_size"][1] for r in rows)
    threads = max(r["threads"] for r in rows)
    pair = {r["xnnpack"]: r["median_ms"] for r in rows
            if r["threads"] == threads and r["input_size"][0] * r["input_size"][1] == largest}
    xnnpack = pair[True] < pair[False]
    slower, faster = (pair[False], pair[True]) if xnnpack else (pair[True], pair[False])
    return {"xnnpack": xnnpack, "threads": threads,
            "why": f"{'XNNPACK' if xnnpack else 'builtin kernels'} {slower / faster:.2f}x faster "
                   f"than {'builtin kernels' if xnnpack else 'XNNPACK'} at the largest size "
                   f"measured, {threads} thread(s)"}


def gpu_delegate(content, graph=None):
    """Whether LiteRT's GPU delegate takes the whole graph: ``{compatible, unsupported_ops,
    analyzer}``.

    Two static checks must agree: every op is in the delegate's documented op table
    (``GPU_DELEGATE_OPS``) with float or int8 tensors (the delegate has no int16 kernels), and
    ``tf.lite.experimental.Analyzer`` with ``gpu_compatibility=True`` finds nothing (alone it
    passes graphs with TOPK_V2 or CUMSUM, which the delegate does not run).
    """
    graph = graph or inspect_graph(content)
    unsupported = [f"{name} x{count}" for name, count in graph.ops.items()
                   if name not in GPU_DELEGATE_OPS]
    if graph.int16_ops:
        unsupported.append(f"int16 tensors in {op_counts(graph.int16_ops)}")
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        tf.lite.experimental.Analyzer.analyze(model_content=content, gpu_compatibility=True)
    analyzer = [line.strip() for line in text.getvalue().splitlines()
                if "GPU" in line and line.strip()]
    analyzer_passes = any("looks compatible with GPU delegate" in line for line in analyzer)
    return {"compatible": not unsupported and analyzer_passes, "unsupported_ops": unsupported,
            "analyzer": analyzer}
