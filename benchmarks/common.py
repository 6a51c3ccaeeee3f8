"""Shared pieces of the benchmarks: machine description and result files."""

import json
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine():
    import keras
    import tensorflow as tf

    from zoo.export.card import cpu_name

    return {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "processor": cpu_name(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "backend": keras.backend.backend(),
            "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]}


def timed(call, runs):
    """Median and fastest seconds of ``runs`` calls after one warm-up call."""
    call()
    times = []
    for _ in range(max(int(runs), 1)):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(sorted(times)[len(times) // 2]), min(times)


def rate(step, items_per_call, warmup=2, seconds=10.0, min_calls=3):
    """Items per second of ``step()``, after ``warmup`` calls, over about ``seconds``."""
    for _ in range(warmup):
        step()
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < seconds:
        step()
        calls += 1
    return calls * items_per_call / (time.perf_counter() - start)


def write(name, payload, markdown):
    """Writes ``results/<name>.json`` and ``results/<name>.md`` atomically."""
    RESULTS.mkdir(exist_ok=True)
    for suffix, text in ((".json", json.dumps(payload, indent=2)), (".md", markdown)):
        target = RESULTS / f"{name}{suffix}"
        tmp = target.with_suffix(suffix + ".tmp")
        tmp.write_text(text + "\n")
        os.replace(tmp, target)
    print(markdown)
