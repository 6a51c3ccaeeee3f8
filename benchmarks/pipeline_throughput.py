"""Input pipeline throughput vs. the rate at which models consume patches in a training step.

    .venv/bin/python benchmarks/pipeline_throughput.py [--data ../shared/data] [--seconds 10]

Writes ``benchmarks/results/pipeline_throughput.{json,md}``.  Goal (issue 3): the
pipeline at least 10x faster than MemNet training needs.
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras
import numpy as np

import zoo
from common import machine, rate, write
from zoo.data import demo_images
from zoo.data.pipeline import training_dataset

# (label, pipeline kwargs, consumer model, model overrides): the papers' own settings.
CASES = [
    ("denoise σ25, 80×80 random (xUnit)", dict(task="denoise", levels=[25], patch_size=80,
                                             batch_size=64, mode="gray"), "xdncnn", {}),
    ("denoise σ∈{30,50,70}, 31×31 grid/21 (MemNet)",
     dict(task="denoise", levels=[30, 50, 70], patch_size=31, batch_size=64, mode="gray",
          patches="grid", stride=21), "memnet", {}),
    ("SR ×{2,3,4}, 31×31 grid/21 (MemNet)",
     dict(task="sr", levels=[2, 3, 4], patch_size=31, batch_size=64, mode="Y",
          patches="grid", stride=21), "memnet", {}),
    ("JPEG q∈{10,20}, 31×31 grid/21 (MemNet)",
     dict(task="jpeg", levels=[10, 20], patch_size=31, batch_size=64, mode="Y",
          patches="grid", stride=21), "memnet", {}),
    ("denoise σ25, 43×43 random (NLRN)", dict(task="denoise", levels=[25], patch_size=43,
                                            batch_size=16, mode="gray"), "nlrn",
     {"neighbourhood": None}),
]


def train_rate(name, overrides, batch, seconds):
    model = zoo.build(name, **overrides)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="mse")
    channels = model.inputs[0].shape[-1]
    x = np.random.default_rng(0).random(batch, dtype="float32")
    x = x.reshape(batch[:3] + (channels,)) if len(batch) == 4 else x
    return rate(lambda: model.train_on_batch(x, x), batch[0], warmup=2, seconds=seconds, min_calls=2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    data = Path(args.data)
    folders = {"gray": data / "BSD400", "Y": [data / "T91", data / "BSD200"]}
    rows, results = [], []
    for label, kwargs, consumer, overrides in CASES:
        source = folders[kwargs["mode"]]
        exists = all(Path(f).is_dir() for f in (source if isinstance(source, list) else [source]))
        images = source if exists else demo_images(mode="gray" if kwargs["mode"] == "gray" else "Y")
        iterator = iter(training_dataset(images, **kwargs))
        pipeline = rate(lambda: next(iterator), kwargs["batch_size"], warmup=3, seconds=args.seconds)
        p = kwargs["patch_size"]
        consumed = train_rate(consumer, overrides, (kwargs["batch_size"], p, p, 1), args.seconds)
        results.append({"case": label, "data": str(source) if exists else "demo images",
                        "pipeline_patches_per_s": pipeline, "model": consumer,
                        "train_patches_per_s": consumed, "ratio": pipeline / consumed})
        rows.append(f"| {label} | {pipeline:,.0f} | {consumer} | {consumed:,.1f} | {pipeline / consumed:,.0f}× |")
        print(rows[-1], flush=True)
    info = machine()
    markdown = "\n".join([
        f"Pipeline vs. training-step throughput on {info['processor']} ({info['cpu_count']} cores), "
        f"TensorFlow {info['tensorflow']}, `benchmarks/pipeline_throughput.py`:", "",
        "| pipeline | pipeline patches/s | model | training patches/s | ratio |",
        "|---|---:|---|---:|---:|", *rows])
    write("pipeline_throughput", {"machine": info, "results": results}, markdown)


if __name__ == "__main__":
    main()
