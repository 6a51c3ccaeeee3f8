"""The model card beside an exported ``.tflite`` (``<name>.card.yaml``): written and read with
PyYAML's safe dumper and loader; tensor specs, rounding, and the machine the numbers were
measured on.
"""

import os
import platform
from pathlib import Path

import numpy as np
import yaml

from zoo.data.tasks import get_task
from zoo.files import write_text_atomically


def tensor_spec(details, meaning):
    scale, zero_point = details["quantization"]
    return {"name": details["name"], "dtype": np.dtype(details["dtype"]).name,
            "shape": [int(d) for d in details["shape_signature"]],
            "quantization": {"scale": float(scale), "zero_point": int(zero_point),
                             "real_value": "scale * (q - zero_point)"} if scale else None,
            "meaning": meaning}


def card_path(out):
    """``<name>.card.yaml`` beside ``<name>.tflite``."""
    out = Path(out)
    return out.with_name(out.stem + ".card.yaml")


class _CardDumper(yaml.SafeDumper):
    """Block mappings; lists of scalars on one line (``patch: [64, 64]``)."""


def _sequence(dumper, items):
    flow = all(not isinstance(item, (dict, list)) for item in items)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=flow)


_CardDumper.add_representer(list, _sequence)


def write_card(path, card):
    """Writes ``card`` (dicts, lists, str, numbers, bools, None) as YAML, atomically."""
    text = yaml.dump(_plain(card), Dumper=_CardDumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=100)
    write_text_atomically(path, text)


def _plain(value):
    """``value`` with numpy scalars as Python ones and tuples as lists (what YAML can hold)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def read_card(tflite):
    """The card of ``tflite`` (``<name>.card.yaml`` beside it) as a dict; None if it has none."""
    path = card_path(tflite)
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as stream:
        card = yaml.safe_load(stream)
    if not isinstance(card, dict):
        raise ValueError(f"{path} is not a model card (a YAML mapping)")
    return card


def card_runtime(tflite):
    """Whether XNNPACK was the faster CPU runtime for ``tflite`` as its card records it
    (``latency.default_runtime.xnnpack``); None if unknown."""
    card = read_card(tflite)
    runtime = ((card or {}).get("latency") or {}).get("default_runtime") or {}
    return runtime.get("xnnpack")


def rounded(value, digits=6):
    """``value`` with every float rounded to ``digits`` significant digits (for the card)."""
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    if isinstance(value, float) and np.isfinite(value) and value != 0:
        return round(value, digits - 1 - int(np.floor(np.log10(abs(value)))))
    return value


def tensor_meaning(colour, task, level, ratio, which):
    kind = {"gray": "gray", "Y": "luma (Y of BT.601)", "RGB": "RGB"}[colour]
    if which == "input":
        degraded = (f"low-resolution (x{ratio} smaller)" if ratio > 1
                    else get_task(task).describe(level))
        return f"{degraded} {kind} image, float values in [0, 1] scale, NHWC, batch 1"
    size = f"{ratio}x the input size" if ratio > 1 else "the input size"
    return f"restored {kind} image at {size}, [0, 1] scale (clip before display)"


def describe_data(data, default):
    if data is None:
        return default
    if isinstance(data, (str, os.PathLike)):
        return str(data)
    return [name if isinstance(name, str) else str(name[0]) for name in data]


def machine():
    """The CPU, core count, OS and library versions, for the card's latency numbers."""
    import ai_edge_litert
    import keras
    import tensorflow as tf

    return {"processor": cpu_name(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "ai_edge_litert": getattr(ai_edge_litert, "__version__",
                                      _dist_version("ai-edge-litert"))}


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _dist_version(name):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None
