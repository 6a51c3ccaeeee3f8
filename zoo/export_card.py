"""The model card written beside an exported ``.tflite``: a small YAML emitter and the machine.

The card is plain block-style YAML (no dependency on PyYAML): mappings and lists nest by
indentation, lists of scalars are written inline, strings are double-quoted with JSON escapes
(valid YAML), numbers and booleans are bare.
"""

import json
import math
import os
import platform
from pathlib import Path

INDENT = "  "


def to_yaml(value):
    """``value`` (dicts, lists, tuples, str, int, float, bool, None) as a YAML document."""
    if not isinstance(value, dict):
        raise TypeError(f"a card is a mapping, got {type(value).__name__}")
    return "\n".join(_mapping(value, 0)) + "\n"


def _scalar(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"cannot write {type(value).__name__} to a card: {value!r}")


def _is_scalar(value):
    return not isinstance(value, (dict, list, tuple))


def _mapping(mapping, depth):
    lines = []
    for key, value in mapping.items():
        head = f"{INDENT * depth}{_key(key)}:"
        if _is_scalar(value):
            lines.append(f"{head} {_scalar(value)}")
        elif not value:
            lines.append(f"{head} {'{}' if isinstance(value, dict) else '[]'}")
        elif isinstance(value, dict):
            lines += [head] + _mapping(value, depth + 1)
        elif all(_is_scalar(v) for v in value):
            lines.append(f"{head} [{', '.join(_scalar(v) for v in value)}]")
        else:
            lines += [head] + _sequence(value, depth + 1)
    return lines


def _sequence(items, depth):
    lines = []
    for item in items:
        if _is_scalar(item):
            lines.append(f"{INDENT * depth}- {_scalar(item)}")
            continue
        if not item:
            lines.append(f"{INDENT * depth}- {'{}' if isinstance(item, dict) else '[]'}")
            continue
        if isinstance(item, (list, tuple)) and all(_is_scalar(v) for v in item):
            lines.append(f"{INDENT * depth}- [{', '.join(_scalar(v) for v in item)}]")
            continue
        nested = (_mapping(item, depth + 1) if isinstance(item, dict)
                  else _sequence(item, depth + 1))
        # The first line of the nested block goes on the dash line.
        lines.append(f"{INDENT * depth}- {nested[0].lstrip()}")
        lines += nested[1:]
    return lines


def _key(key):
    text = str(key)
    plain = text.replace("_", "").replace("-", "").replace(".", "").isalnum()
    return text if plain and not text[0].isdigit() else json.dumps(text)


def write_card(path, card):
    """Writes ``card`` as YAML to ``path`` through a temporary file (never a partial card)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(to_yaml(card), encoding="utf-8")
    os.replace(tmp, path)


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
