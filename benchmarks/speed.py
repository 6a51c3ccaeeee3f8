"""Speed side by side in one process: PyTorch reference vs our Keras and LiteRT, and the machine's limit.

    .venv/bin/pip install -e ".[bench]"        # torch (CPU), the papers' framework
    .venv/bin/python benchmarks/speed.py [--sizes 256 512] [--runs 3] [--train-seconds 15]

Inference, gray input, 2 threads, batch 1, xDnCNN and xSRCNNf with random weights (random BN
statistics, so nothing folds away):

- PyTorch (``benchmarks/torch_reference.py``, written from SPEC): eager NCHW, eager channels-last,
  ``torch.compile`` channels-last; all under ``torch.inference_mode``.
- Keras: ``model.predict`` (before) and the compiled forward that ``zoo.restore`` uses (after).
- LiteRT: the naive export (9x9 depthwise whole, float32), then every mode as ``zoo export``
  writes it by default (resizable, 9x9 split into <=5x5 pieces), plus int8 with the 9x9 whole
  (``--xunit-split 0``); each on the builtin kernels and on XNNPACK.  Then int8 exported at a
  fixed size (``--input-shape N N``, one file per size), with the split and with its default,
  4x4 pixel blocks (``ExportXUnit(block=4)``), on XNNPACK.

Training throughput, xDnCNN, Adam, MSE, batch 16 of 40x40 patches (patches/s): PyTorch eager
(NCHW and channels-last) and ``torch.compile``; Keras ``train_on_batch`` without and with XLA
(``jit_compile``).

GFLOP/s count 2 x the convolutions' multiply-adds (``zoo.export.model_flops``) and stand beside
the 2048x2048 float32 matmul rate measured in the same run.  Writes
``benchmarks/results/speed.{json,md}``.
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

import keras
import torch

import zoo
from common import machine, rate, timed, write
from tflite_latency import matmul_peak, randomised
from torch_reference import MODELS as TORCH_MODELS
from zoo.data import demo_images
from zoo.export import (GATE_CLIP, LiteRT, XUNIT_BLOCK, XUNIT_SPLIT, calibration_inputs,
                        convert, model_flops, norms_as_convs, xunit_options)
from zoo.restore import _forward

THREADS = 2
TASKS = {"xdncnn": ("denoise", 25), "xsrcnn_f": ("sr", 3)}
# (label, mode, xunit split, xunit block, fixed size): the naive export first, then the resizable
# defaults, the int8 export that keeps the 9x9 whole (more accurate, slower), then int8 at a fixed
# size with the split and with its default, the pixel blocks
LITERT = [("float32, 9×9 whole (naive)", "float32", 0, 0, False)] + [
    (f"{mode} (default)", mode, XUNIT_SPLIT[mode], 0, False) for mode in XUNIT_SPLIT] + [
    ("int8, 9×9 whole", "int8", 0, 0, False),
    ("int8, fixed size, split", "int8", XUNIT_SPLIT["int8"], 0, True),
    ("int8, fixed size, 4×4 blocks (default)", "int8", 0, XUNIT_BLOCK, True)]


def torch_copy(name, keras_model):
    """The PyTorch reference with the Keras model's weights (to check both compute the same)."""
    net = TORCH_MODELS[name]().eval()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    k_convs = [w for w in keras_model.weights if w.path.endswith(("kernel", "bias"))]
    k_norms = [w for w in keras_model.weights if "gamma" in w.path or "beta" in w.path
               or "moving" in w.path]
    with torch.no_grad():
        pairs = iter(k_convs)
        for conv in convs:
            kernel, bias = next(pairs).numpy(), next(pairs).numpy()
            # Keras HWIO (depthwise: HWC1) -> PyTorch OIHW (depthwise: C1HW)
            if conv.groups > 1:
                kernel = kernel.transpose(2, 3, 0, 1)
            else:
                kernel = kernel.transpose(3, 2, 0, 1)
            conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel)))
            conv.bias.copy_(torch.from_numpy(bias))
        values = iter(k_norms)
        for norm in norms:
            for target in (norm.weight, norm.bias, norm.running_mean, norm.running_var):
                target.copy_(torch.from_numpy(next(values).numpy()))
            norm.eps = 1e-5
    return net


def inference(name, sizes, runs, peak):
    model = randomised(zoo.build(name))
    net = torch_copy(name, model)
    rows = []

    def add(framework, variant, size, seconds, **extra):
        flops = model_flops(model, size, size)
        rows.append({"model": name, "framework": framework, "variant": variant, "size": size,
                     "median_ms": seconds[0] * 1000, "min_ms": seconds[1] * 1000,
                     "gflops_per_s": flops / seconds[0] / 1e9,
                     "fraction_of_peak": flops / seconds[0] / 1e9 / peak, **extra})
        print(rows[-1], flush=True)

    compiled = torch.compile(net.to(memory_format=torch.channels_last))
    for size in sizes:
        x = np.random.default_rng(0).random((1, size, size, 1), np.float32)
        nchw = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
        last = nchw.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            net.to(memory_format=torch.contiguous_format)
            reference = net(nchw).numpy().transpose(0, 2, 3, 1)
            add("PyTorch", "eager NCHW", size, timed(lambda: net(nchw), runs))
            net.to(memory_format=torch.channels_last)
            add("PyTorch", "eager channels-last", size, timed(lambda: net(last), runs))
            add("PyTorch", "torch.compile channels-last", size,
                timed(lambda: compiled(last), runs))
        ours = np.asarray(model(x, training=False))
        agreement = float(np.abs(ours - reference).max())
        add("Keras", "predict (before)", size,
            timed(lambda: model.predict(x, verbose=0), runs), max_abs_diff_vs_torch=agreement)
        forward = _forward(model)
        add("Keras", "compiled forward (after)", size, timed(lambda: forward(x).numpy(), runs))

    task, level = TASKS[name]
    colour = "gray" if task == "denoise" else "Y"
    calibration = calibration_inputs(demo_images(colour, split="train"), task=task, level=level,
                                     mode=colour, samples=32)
    for label, mode, split, block, fixed in LITERT:
        source = xunit_options(model, split=split, block=block,
                               gate_clip=GATE_CLIP if mode == "int8" else None,
                               pointwise_norm=mode == "int8")
        source = norms_as_convs(source) if mode == "int8" else source
        files = {}
        if fixed:
            for size in sizes:
                files[size] = convert(source, mode, input_shape=(size, size),
                                      calibration=calibration_inputs(
                                          demo_images(colour, split="train"), task=task,
                                          level=level, mode=colour, samples=4,
                                          input_shape=(size, size)))[0]
        else:
            content, _ = convert(source, mode, calibration=calibration)
            files = {size: content for size in sizes}
        for xnnpack in (True,) if fixed else (False, True):
            for size in sizes:
                runner = LiteRT(files[size], threads=THREADS, xnnpack=xnnpack)
                runner.prepare(size, size)
                runner.set_random_input()
                add("LiteRT", f"{label}, {'XNNPACK' if xnnpack else 'builtin'}", size,
                    timed(runner.invoke, runs), file_bytes=len(files[size]), mode=mode,
                    xunit_split=split, xunit_block=block, fixed_size=fixed, xnnpack=xnnpack)
    return rows


def training(seconds, batch=16, patch=40):
    """Patches/s of xDnCNN training steps (Adam 1e-3, MSE) in PyTorch and Keras."""
    rng = np.random.default_rng(0)
    clean = rng.random((batch, patch, patch, 1), np.float32)
    noisy = clean + rng.normal(0, 25 / 255, clean.shape).astype(np.float32)
    rows = []

    def torch_rate(variant, channels_last, compile_):
        net = TORCH_MODELS["xdncnn"]().train()
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        net = net.to(memory_format=fmt)
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
        x = torch.from_numpy(noisy.transpose(0, 3, 1, 2).copy()).contiguous(memory_format=fmt)
        y = torch.from_numpy(clean.transpose(0, 3, 1, 2).copy()).contiguous(memory_format=fmt)

        def step():
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(net(x), y)
            loss.backward()
            optimizer.step()

        step = torch.compile(step) if compile_ else step
        rows.append({"framework": "PyTorch", "variant": variant,
                     "patches_per_s": rate(step, batch, warmup=3, seconds=seconds)})
        print(rows[-1], flush=True)

    torch_rate("eager NCHW", False, False)
    torch_rate("eager channels-last", True, False)
    torch_rate("torch.compile", False, True)
    for jit in (False, True):
        model = zoo.build("xdncnn")
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", jit_compile=jit)
        rows.append({"framework": "Keras", "variant": f"train_on_batch, jit_compile={jit}",
                     "patches_per_s": rate(lambda: model.train_on_batch(noisy, clean), batch,
                                           warmup=3, seconds=seconds)})
        print(rows[-1], flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 512])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--train-seconds", type=float, default=15)
    parser.add_argument("--models", nargs="+", default=list(TASKS))
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    load_before = os.getloadavg()
    peaks = matmul_peak()
    peak = max(peaks.values())
    print(f"matmul peak {peaks}", flush=True)
    rows = [row for name in args.models for row in inference(name, args.sizes, args.runs, peak)]
    train_rows = training(args.train_seconds)
    info = machine()
    info.update(torch=torch.__version__, ai_edge_litert=version("ai-edge-litert"),
                threads=THREADS, runs=args.runs,
                load_average_before_after=[list(load_before), list(os.getloadavg())])
    write("speed", {"machine": info, "matmul_gflops_per_s": peaks, "inference": rows,
                    "training": train_rows}, markdown(rows, train_rows, peaks, info))


def markdown(rows, train_rows, peaks, info):
    peak = max(peaks.values())
    sizes = sorted({r["size"] for r in rows})
    lines = [f"Speed on {info['processor']} ({info['cpu_count']} cores), {THREADS} threads, "
             f"TensorFlow {info['tensorflow']}, Keras {info['keras']}, PyTorch {info['torch']}, "
             f"ai-edge-litert {info['ai_edge_litert']}; `benchmarks/speed.py`, median of "
             f"{info['runs']} runs after a warm-up; load average before/after "
             f"{info['load_average_before_after'][0][0]:.1f}/"
             f"{info['load_average_before_after'][1][0]:.1f}. Matmul peak (2048² float32): "
             f"numpy {peaks['numpy']:.0f}, TensorFlow {peaks['tensorflow']:.0f} GFLOP/s.", "",
             "**Inference**, gray, batch 1, ms (GFLOP/s and fraction of the matmul peak at the "
             "largest size; LiteRT GFLOP/s count the float model's FLOPs):", "",
             "| model | framework | variant | " + " | ".join(f"{s}²" for s in sizes)
             + " | GFLOP/s | of peak |",
             "|---|---|---|" + "---:|" * len(sizes) + "---:|---:|"]
    keys = []
    for r in rows:
        key = (r["model"], r["framework"], r["variant"])
        if key not in keys:
            keys.append(key)
    for key in keys:
        chosen = {r["size"]: r for r in rows if (r["model"], r["framework"], r["variant"]) == key}
        top = chosen[max(chosen)]
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | "
                     + " | ".join(f"{chosen[s]['median_ms']:,.0f}" if s in chosen else "—"
                                  for s in sizes)
                     + f" | {top['gflops_per_s']:.0f} | {top['gflops_per_s'] / peak:.0%} |")
    lines += ["", "**Training** xDnCNN, Adam, MSE, batch 16 of 40×40:", "",
              "| framework | variant | patches/s |", "|---|---|---:|"]
    lines += [f"| {r['framework']} | {r['variant']} | {r['patches_per_s']:.1f} |"
              for r in train_rows]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
