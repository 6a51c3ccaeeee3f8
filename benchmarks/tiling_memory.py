"""Peak memory and time of MemNet M6R6 on a 2-megapixel image: whole vs. tiled.

    .venv/bin/python benchmarks/tiling_memory.py [--size 1632 1224]

Each variant runs in its own process (peak resident memory = ru_maxrss of that
process, TensorFlow included).  Writes ``benchmarks/results/tiling_memory.{json,md}``.
Goal (issue 5): tiled peak under 2 GB with identical output.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write  # noqa: E402

CHILD = """
import json, resource, sys, time
import numpy as np
import zoo
from zoo.restore import exact_margin, predict
import keras
keras.utils.set_random_seed(0)
model = zoo.build("memnet")
image = np.load(sys.argv[1])
options = json.loads(sys.argv[2])
predict(model, image[:64, :64], **options)             # trace once
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
out = predict(model, image, **options)
seconds = time.perf_counter() - start
np.save(sys.argv[3], out)
print(json.dumps({"seconds": seconds, "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                  "before_gb": base / 2**20}))
"""

VARIANTS = [
    ("whole image", {}),
    ("tiles 512, overlap 32", {"tile": 512, "overlap": 32}),
    ("tiles 512, overlap 200 (exact: margin 75 >= receptive radius 74)", {"tile": 512, "overlap": 200}),
    ("tiles 384, overlap 32", {"tile": 384, "overlap": 32}),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=[1632, 1224], metavar=("W", "H"))
    args = parser.parse_args()
    width, height = args.size
    rng = np.random.default_rng(0)
    # A smooth random image plus noise: the model's input statistics matter little here.
    coarse = rng.random((height // 16 + 1, width // 16 + 1))
    image = np.kron(coarse, np.ones((16, 16)))[:height, :width, None]
    image = (image + rng.normal(0, 25 / 255, image.shape)).astype(np.float32)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    rows, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/in.npy", image)
        outputs = {}
        for label, options in VARIANTS:
            out = f"{tmp}/{len(outputs)}.npy"
            done = subprocess.run([sys.executable, "-c", CHILD, f"{tmp}/in.npy", json.dumps(options), out],
                                  capture_output=True, text=True, env=env)
            if done.returncode:
                results.append({"variant": label, "options": options, "error": done.stderr[-500:]})
                rows.append(f"| {label} | failed | | | |")
                print(rows[-1], done.stderr[-1500:], flush=True)
                continue
            measured = json.loads(done.stdout.strip().splitlines()[-1])
            outputs[label] = np.load(out)
            whole = outputs.get("whole image")
            diff = float(np.abs(outputs[label] - whole).max()) if whole is not None else None
            results.append({"variant": label, "options": options, **measured, "max_abs_diff": diff})
            rows.append(f"| {label} | {measured['peak_gb']:.2f} | {measured['seconds']:.0f} | "
                        f"{'—' if diff is None else f'{diff:.1e}'} | "
                        f"{'—' if diff is None else f'{diff * 255:.4f}'} |")
            print(rows[-1], flush=True)
    info = machine()
    markdown = "\n".join([
        f"MemNet M6R6 (untrained: He init, BN at its initial statistics) on a {width}x{height} ({width * height / 1e6:.1f} MP) gray "
        f"image, {info['processor']}, {info['cpu_count']} cores, TensorFlow {info['tensorflow']} "
        "(`benchmarks/tiling_memory.py`):", "",
        "| variant | peak RSS (GB) | time (s) | max abs diff vs whole | same, in 8-bit steps |",
        "|---|---:|---:|---:|---:|", *rows])
    write("tiling_memory", {"machine": info, "size": [width, height], "results": results}, markdown)


if __name__ == "__main__":
    main()
