"""Why the xUnit exports look as they do: its pieces timed alone on LiteRT, 512x512x64, 2 threads.

    .venv/bin/python benchmarks/xunit_pieces.py [--size 512] [--runs 5]

Each row is a one-op (or one-layer) Keras model with random weights, converted at a fixed input
size to float32 and to int8 (calibrated on 4 random inputs) and run on XNNPACK:

- depthwise convs of several kernel shapes (XNNPACK runs up to 25 taps fast, more ~50x slower);
- the 3x3 dense conv 64->64 that the xNets are made of, and the grouped conv that
  ``ExportXUnit(block=4)`` runs (4x4 pixel blocks, 1024 channels, 3x3 blocks);
- the block layout (one 5-D transpose against SPACE_TO_DEPTH and a 3-D transpose);
- the elementwise passes of the unit;
- whole xUnits: the 9x9 kept whole, ``split=5`` and ``block=4``, with the int8 gate clip.

Writes ``benchmarks/results/xunit_pieces.{json,md}``.
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras
import numpy as np
from keras import ops

from common import machine, timed, write
from zoo.export import LiteRT, convert
from zoo.export.layers import ExportXUnit
from zoo.layers.xunit import _blocks_to_channels

THREADS = 2
CHANNELS = 64


def cases(size):
    c = CHANNELS
    rows = size // 4

    def one_transpose(x):
        x = ops.reshape(x, (rows, 4, rows, 4, c))
        x = ops.transpose(x, (0, 2, 4, 1, 3))
        return ops.reshape(x, (1, rows, rows, 16 * c))

    yield from ((f"depthwise {h}x{w}", "depthwise",
                 lambda x, h=h, w=w: keras.layers.DepthwiseConv2D((h, w), padding="same")(x))
                for h, w in ((3, 3), (5, 5), (1, 9), (9, 1), (2, 9), (3, 9), (5, 9), (7, 7),
                             (9, 9)))
    yield "conv 3x3 64->64", "conv", lambda x: keras.layers.Conv2D(c, 3, padding="same")(x)
    yield ("5-D transpose + grouped conv 3x3 on 4x4 blocks (1024 ch, 64 groups)", "conv",
           lambda x: keras.layers.Conv2D(16 * c, 3, padding="same", groups=c)(one_transpose(x)))
    yield "blocks to channels: one 5-D transpose", "layout", one_transpose
    yield ("blocks to channels: SPACE_TO_DEPTH + 3-D transpose (XUnit)", "layout",
           lambda x: _blocks_to_channels(x, 4, 1, rows, rows, c))
    yield "add a constant", "elementwise", lambda x: x + 1.0
    yield "multiply by itself", "elementwise", lambda x: x * x
    yield "exp", "elementwise", ops.exp
    yield "gate exp(d * (d * -1))", "elementwise", lambda x: ops.exp(x * (x * -1.0))
    for label, options in (("9x9 whole", {}), ("split=5", {"split": 5}),
                           ("block=4", {"block": 4})):
        yield (f"xUnit 9x9, {label}, gate clip 3", "xunit",
               lambda x, options=options: ExportXUnit(9, gate_clip=3.0, **options)(x))


def measure(build, size, mode, runs, rng):
    x = keras.Input((size, size, CHANNELS))
    model = keras.Model(x, build(x))
    for weight in model.weights:
        value = rng.standard_normal(weight.shape) * 0.1
        if "variance" in weight.path:
            value = np.abs(value) + 0.5
        weight.assign(value.astype("float32"))
    calibration = [rng.standard_normal((1, size, size, CHANNELS)).astype("float32")
                   for _ in range(4)]
    content, report = convert(model, mode, input_shape=(size, size), calibration=calibration)
    runner = LiteRT(content, threads=THREADS, xnnpack=True)
    runner.prepare(size, size)
    runner.set_random_input()
    median, fastest = timed(runner.invoke, runs)
    return {"median_ms": median * 1e3, "min_ms": fastest * 1e3, "ops": report.ops}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    load_before = os.getloadavg()
    rows = []
    for label, kind, build in cases(args.size):
        row = {"piece": label, "kind": kind}
        for mode in ("float32", "int8"):
            row[mode] = measure(build, args.size, mode, args.runs, rng)
        rows.append(row)
        print(row, flush=True)
    info = machine()
    info.update(threads=THREADS, runs=args.runs, size=args.size,
                load_average_before_after=[list(load_before), list(os.getloadavg())])
    lines = [f"xUnit pieces on LiteRT XNNPACK, {args.size}x{args.size}x{CHANNELS}, fixed shape, "
             f"{THREADS} threads, {info['processor']}; `benchmarks/xunit_pieces.py`, median of "
             f"{args.runs} runs after a warm-up; load average before/after "
             f"{load_before[0]:.1f}/{os.getloadavg()[0]:.1f}.", "",
             "| piece | float32 ms | int8 ms |", "|---|---:|---:|"]
    lines += [f"| {r['piece']} | {r['float32']['median_ms']:,.1f} | {r['int8']['median_ms']:,.1f} |"
              for r in rows]
    write("xunit_pieces", {"machine": info, "rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
