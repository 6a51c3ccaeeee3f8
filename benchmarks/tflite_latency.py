"""Latency of Keras predict and LiteRT (float32, float16, dynamic, int8): xDnCNN and xSRCNNf.

    .venv/bin/python benchmarks/tflite_latency.py [--runs 3] [--sizes 256 512]

For each model (full size, random weights with random BN statistics, so every layer survives
conversion as in a trained model): Keras ``predict`` on 2 threads, and each TFLite mode as the
export writes it by default (9x9 xUnit depthwise convs split into pieces of at most 5x5 in the
float modes, whole in int8, where batch norms run as 1x1 depthwise convs) at every size, 1 and 2 threads, XNNPACK on and off; at the largest size on 2
threads also the other choice (whole / split).  Median of ``--runs`` runs after one warm-up.
GFLOP/s use the FLOPs counted by ``zoo.export.model_flops`` (2 x multiply-adds of the
convolutions) and stand beside the machine's 2048x2048 float32 matrix-multiply rate on 2 threads.
Writes ``benchmarks/results/tflite_latency.{json,md}``.
"""

import argparse
import os
import sys
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import tensorflow as tf

tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(1)

import zoo
from common import machine, timed, write
from zoo.data import demo_images
from zoo.export import (GATE_CLIP, MODES, XUNIT_SPLIT, calibration_inputs, convert,
                        measure_latency, model_flops, norms_as_convs, xunit_options)

# (registry name, task, level, colour of the input)
MODELS = [("xdncnn", "denoise", 25, "gray"), ("xsrcnn_f", "sr", 3, "Y")]
THREADS = (1, 2)


def matmul_peak(size=2048, runs=10):
    """Best GFLOP/s of a float32 ``size``² matmul: numpy (BLAS) and TensorFlow (2 threads)."""
    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    t = tf.constant(a)
    flops = 2 * size**3
    rates = {}
    for name, multiply in (("numpy", lambda: a @ a),
                           ("tensorflow", lambda: tf.linalg.matmul(t, t).numpy())):
        rates[name] = flops / timed(multiply, runs)[1] / 1e9
    return rates


def randomised(model, seed=0):
    """Random BN statistics and biases, so no layer is an identity the converter drops."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        kind = weight.path.rsplit("/", 1)[-1]
        if kind in ("gamma", "moving_variance"):
            weight.assign(rng.uniform(0.5, 1.5, tuple(weight.shape)).astype("float32"))
        elif kind in ("beta", "moving_mean", "bias"):
            weight.assign(rng.normal(0, 0.05, tuple(weight.shape)).astype("float32"))
    return model


def keras_latency(model, size, runs):
    x = np.random.default_rng(0).random((1, size, size, model.inputs[0].shape[-1]), np.float32)
    median, fastest = timed(lambda: model.predict(x, verbose=0), runs)
    return median * 1000, fastest * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 512])
    args = parser.parse_args()
    load_before = os.getloadavg()
    peak = matmul_peak()
    peak_best = max(peak.values())
    print(f"matmul peak: {peak}", flush=True)

    results = []
    for name, task, level, colour in MODELS:
        model = randomised(zoo.build(name))
        flops = {s: model_flops(model, s, s) for s in args.sizes}
        for size in args.sizes:
            median, fastest = keras_latency(model, size, args.runs)
            results.append({"model": name, "runtime": "Keras predict", "mode": "keras",
                            "input_size": size, "threads": 2, "xnnpack": None,
                            "median_ms": median, "min_ms": fastest,
                            "gflops_per_s": flops[size] / median / 1e6, "file_bytes": None})
            print(results[-1], flush=True)
        calibration = calibration_inputs(demo_images(colour, split="train"), task=task,
                                         level=level, mode=colour, samples=64)
        for mode in MODES:
            default = XUNIT_SPLIT[mode]
            for split in (default, 0 if default else 5):  # the default export, then the other
                source = xunit_options(model, split=split,
                                       gate_clip=GATE_CLIP if mode == "int8" else None,
                                       pointwise_norm=mode == "int8")
                source = norms_as_convs(source) if mode == "int8" else source
                content, _ = convert(source, mode, calibration=calibration)
                top = max(args.sizes)
                sizes, threads = (args.sizes, THREADS) if split == default else ([top], (2,))
                rows = measure_latency(content, [(s, s) for s in sizes], threads, args.runs,
                                       flops=lambda h, w: flops[h], every=True)
                for row in rows:
                    results.append({
                        "model": name, "runtime": f"TFLite {mode}", "mode": mode,
                        "xunit_split": split or None, "default_export": split == default,
                        "input_size": row["input_size"][0], "threads": row["threads"],
                        "xnnpack": row["xnnpack"], "median_ms": row["median_ms"],
                        "min_ms": row["min_ms"], "gflops_per_s": row["gflops_per_s"],
                        "file_bytes": len(content)})
                    print(results[-1], flush=True)

    info = machine()
    info["ai_edge_litert"] = version("ai-edge-litert")
    info["load_average_before_after"] = [list(load_before), list(os.getloadavg())]
    info["runs"] = args.runs
    write("tflite_latency", {"machine": info, "matmul_gflops_per_s": peak,
                             "flops_per_pixel": {n: model_flops(zoo.build(n), 64, 64) / 64**2
                                                 for n, *_ in MODELS},
                             "runs": args.runs, "results": results},
          markdown(results, peak, peak_best, info, max(args.sizes)))


def markdown(results, peak, peak_best, info, size):
    """The headline table at ``size`` on 2 threads, then every setting of the default exports."""
    pick = lambda **keys: [r for r in results if all(r.get(k) == v for k, v in keys.items())]
    lines = [f"LiteRT vs Keras latency on {info['processor']} ({info['cpu_count']} cores), "
             f"TensorFlow {info['tensorflow']}, ai-edge-litert {info['ai_edge_litert']}, "
             f"`benchmarks/tflite_latency.py`: median of {info['runs']} runs after one warm-up; "
             f"load average before/after {info['load_average_before_after'][0][0]:.1f}/"
             f"{info['load_average_before_after'][1][0]:.1f}. "
             f"Matrix-multiply peak (2048² float32, 2 threads): numpy {peak['numpy']:.0f}, "
             f"TensorFlow {peak['tensorflow']:.0f} GFLOP/s.", "",
             f"**{size}×{size}, 2 threads**, ms (GFLOP/s: 2 × the convolutions' multiply-adds "
             "per second; % of the matmul peak). 9×9 = xUnit depthwise convs whole, ≤5×5 = split "
             "into pieces of at most 5×5 taps; * = the export's default:", "",
             "| model | runtime | file 9×9 / ≤5×5 | 9×9 builtin | 9×9 XNNPACK | ≤5×5 builtin | "
             "≤5×5 XNNPACK | best GFLOP/s | % of peak |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, *_ in MODELS:
        keras_row = pick(model=name, mode="keras", input_size=size)[0]
        lines.append(f"| {name} | Keras predict | — | {keras_row['median_ms']:,.0f} | — | — | — | "
                     f"{keras_row['gflops_per_s']:.1f} | "
                     f"{100 * keras_row['gflops_per_s'] / peak_best:.0f}% |")
        for mode in MODES:
            rows = pick(model=name, mode=mode, input_size=size, threads=2)
            cells, files = [], []
            for split in (None, 5):
                chosen = [r for r in rows if r["xunit_split"] == split]
                files.append(f"{chosen[0]['file_bytes'] / 1024:,.0f}" if chosen else "—")
                for xnnpack in (False, True):
                    row = next((r for r in chosen if r["xnnpack"] is xnnpack), None)
                    mark = "*" if row and row["default_export"] else ""
                    cells.append(f"{row['median_ms']:,.0f}{mark}" if row else "—")
            best = max(r["gflops_per_s"] for r in rows)
            lines.append(f"| {name} | TFLite {mode} | {' / '.join(files)} KiB | "
                         + " | ".join(cells) + f" | {best:.1f} | {100 * best / peak_best:.0f}% |")
    lines += ["", "**Default exports, all settings** (median ms, XNNPACK off / on):", "",
              "| model | mode | input | 1 thread | 2 threads |", "|---|---|---|---:|---:|"]
    for name, *_ in MODELS:
        for mode in MODES:
            for s in sorted({r["input_size"] for r in pick(model=name, mode=mode)}):
                cell = lambda t: " / ".join(
                    f"{r['median_ms']:,.0f}" for x in (False, True)
                    for r in pick(model=name, mode=mode, input_size=s, threads=t, xnnpack=x,
                                  default_export=True))
                lines.append(f"| {name} | {mode} | {s}×{s} | {cell(1)} | {cell(2)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
