"""Post-training integer exports of the authors' models: quantization drop, size and latency.

    ZOO_OFFICIAL_MIRROR=../shared/official .venv/bin/python benchmarks/int8_official.py \
        [--data ../shared/data] [--mode int8|int16x8] [--calibration demo train] \
        [--only xdncnn:official-s25 ...]

Each official tag is exported as ``zoo export --mode MODE`` does it by default (calibrated on
128 patches of the built-in demo images) and again calibrated on 128 patches of the model's
training set (BSD400 for denoising, T91 for super-resolution), validated on the test set of its
card (Set12 or Set5, all images) and timed at 256x256 on 2 threads, XNNPACK on and off.
Writes ``benchmarks/results/MODE_official.{json,md}``.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, write
from zoo.export import export

# (model, tag, task, level, validation set, training set for calibration)
OFFICIAL = [
    ("xdncnn", "official-s25", "denoise", 25, "Set12", "BSD400"),
    ("xdncnn", "official-s50", "denoise", 50, "Set12", "BSD400"),
    ("xsrcnn_f", "official-x3", "sr", 3, "Set5", "T91"),
    ("xsrcnn_f", "official-x4", "sr", 4, "Set5", "T91"),
    ("xsrcnn_c", "official-x3", "sr", 3, "Set5", "T91"),
    ("xsrcnn_c", "official-x4", "sr", 4, "Set5", "T91"),
    ("dncnn_s", "official-s15", "denoise", 15, "Set12", "BSD400"),
    ("dncnn_s", "official-s25", "denoise", 25, "Set12", "BSD400"),
    ("dncnn_s", "official-s50", "denoise", 50, "Set12", "BSD400"),
    ("dncnn_b", "official", "denoise", 25, "Set12", "BSD400"),
    ("dncnn_3", "official", "denoise", 25, "Set12", "BSD400"),
    ("vdsr", "official", "sr", 3, "Set5", "T91"),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get(
        "ZOO_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")))
    parser.add_argument("--mode", default="int8", choices=["int8", "int16x8"])
    parser.add_argument("--calibration", nargs="+", default=["demo", "train"],
                        choices=["demo", "train"])
    parser.add_argument("--only", nargs="*", default=None, help="MODEL:TAG entries to run")
    parser.add_argument("--val-limit", type=int, default=0,
                        help="validate on the first N images only (int16x8 runs on LiteRT's "
                             "reference kernels: ~30 s per 256x256 image for xDnCNN)")
    args = parser.parse_args()
    rows = []
    for model, tag, task, level, val, train in OFFICIAL:
        if args.only and f"{model}:{tag}" not in args.only:
            continue
        for calibration in [train if c == "train" else c for c in args.calibration]:
            with tempfile.TemporaryDirectory() as folder:
                start = time.perf_counter()
                card = export(model, Path(folder) / "m.tflite", mode=args.mode, weights=tag,
                              task=task, level=level, val_data=args.data / val,
                              val_limit=args.val_limit,
                              calibration_data=None if calibration == "demo"
                              else args.data / calibration,
                              latency_sizes=(256,), latency_threads=(2,))
                seconds = time.perf_counter() - start
            numerics = card["numerics"]
            latency = {r["xnnpack"]: r["median_ms"] for r in card["latency"]["results"]}
            rows.append({"model": model, "tag": tag, "task": task, "level": level,
                         "test_set": val, "images": numerics["images"],
                         "calibration": calibration,
                         "mode": args.mode, "keras_psnr": numerics["keras"]["psnr"],
                         "tflite_psnr": numerics["tflite"]["psnr"],
                         "drop_db": numerics["quantization_drop_db"],
                         "size_mb": card["file"]["size_mb"],
                         "latency_256_ms": {"xnnpack": latency[True], "builtin": latency[False]},
                         "export_seconds": round(seconds, 1)})
            print(rows[-1], flush=True)
    lines = [f"| weights | test set | calibration | Keras dB | {args.mode} dB | drop dB | size MB "
             "| 256² ms (XNNPACK / builtin), 2 threads | export s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        level = f"σ{r['level']}" if r["task"] == "denoise" else f"×{r['level']}"
        count = f" ({r['images']} images)" if args.val_limit else ""
        lines.append(f"| `{r['model']}` `{r['tag']}` | {r['test_set']}{count} {level} | "
                     f"{r['calibration']} | {r['keras_psnr']:.2f} | {r['tflite_psnr']:.2f} | "
                     f"{r['drop_db']:.2f} | {r['size_mb']:.3f} | "
                     f"{r['latency_256_ms']['xnnpack']:.1f} / "
                     f"{r['latency_256_ms']['builtin']:.1f} | {r['export_seconds']:.0f} |")
    write(f"{args.mode}_official", {"machine": machine(), "rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
