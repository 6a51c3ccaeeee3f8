"""Weights by tag: our own, shipped in ``zoo/weights/``, and the authors' (``official-*``).

A shipped entry is two files, ``<model>-<tag>.weights.h5`` and ``<model>-<tag>.card.json``; the
card says how the weights were made (data, recipe, steps, wall time, hardware, backend, date),
the builder overrides they need, and their PSNR/SSIM per test set under SPEC §4.  Official tags
are fetched and converted on first use (:mod:`zoo.official`); their cards ship, their weights
do not.  Every card's ``results`` is a list of rows ``{task, set, level, psnr, ssim, input_psnr,
input_ssim}`` (official cards add ``paper_psnr``).

    zoo.build("xdncnn", weights="official-s25")   # the authors' model
    zoo.build("xdncnn", weights="bsd400-s25")     # a shipped tag
    zoo.build("xdncnn", weights="my.weights.h5")  # or any weights file
"""

import json
import os
import re
import warnings
from pathlib import Path

from zoo import official

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def list_pretrained(model=None):
    """The cards of every tag (optionally of one model): official ones first, then shipped ones."""
    cards = official.list_cards(model)
    for path in sorted(WEIGHTS_DIR.glob("*.card.json")):
        card = json.loads(path.read_text())
        if model is None or card["model"] == model:
            cards.append(card)
    return cards


def card(model, tag):
    """The card of ``model``'s weights ``tag``; a clear error listing the tags that exist."""
    for entry in list_pretrained(model):
        if entry["tag"] == tag:
            return entry
    tags = [c["tag"] for c in list_pretrained(model)]
    raise ValueError(f"no pretrained weights {tag!r} for model {model!r}; "
                     f"known: {', '.join(tags) if tags else 'none'} (see 'zoo list --pretrained')")


def weights_file(model, tag):
    return WEIGHTS_DIR / f"{model}-{tag}.weights.h5"


def is_tag(weights):
    """A tag rather than a file: no folder in it and no weights-file suffix."""
    text = os.fspath(weights)
    return os.path.sep not in text and not text.endswith((".h5", ".keras"))


def build_with_weights(name, weights, builder, overrides=None):
    """``builder(**overrides)`` with ``weights`` loaded: a file, a shipped tag or an official tag
    (whose card's builder overrides come first)."""
    overrides = dict(overrides or {})
    if not is_tag(weights):
        if not Path(weights).is_file():
            raise FileNotFoundError(f"weights file {os.fspath(weights)!r} not found")
        if not Path(weights).name.endswith(".h5"):
            raise ValueError(f"weights for {name!r} must be a .weights.h5 file (or a .keras "
                             f"file), got {os.fspath(weights)}")
        return load_weights(builder(**overrides), Path(weights), name, overrides)
    if official.is_official(weights) and any(
            e.model == name and e.tag == weights for e in official.OFFICIAL):
        entry = official.get(name, weights)
        model = builder(**{**entry.overrides, **overrides})
        return load_weights(model, official.weights_file(name, weights, model), name, overrides)
    entry = card(name, weights)
    model = builder(**{**entry.get("overrides", {}), **overrides})
    return load_weights(model, weights_file(name, weights), name, overrides)


def load_weights(model, path, name, overrides=None):
    """``model.load_weights(path)`` with one-line errors: an unreadable file, a file that does not
    fit (how many layers, one shape pair), or one that fits only in part (Keras just warns)."""
    described = f"model {name!r}" + (f" with overrides {overrides}" if overrides else "")
    hint = ("Build the model with the overrides it was trained with (--set), or use its "
            ".keras file.")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.load_weights(path)
    except OSError as error:
        raise ValueError(f"cannot read weights file {os.fspath(path)}: not a valid HDF5 "
                         f".weights.h5 file ({describe_error(error)})") from None
    except Exception as error:
        raise ValueError(f"weights file {os.fspath(path)} does not fit {described}: "
                         f"{_mismatch(error)}. {hint}") from None
    skipped = [w for w in caught if "Skipping" in str(w.message) or "fresh" in str(w.message)]
    if skipped:
        raise ValueError(f"weights file {os.fspath(path)} fits {described} only in part "
                         f"({describe_error(skipped[0].message)}). {hint}")
    return model


def _mismatch(error):
    """Keras' long load error in a few words: how many layers failed, and one shape pair."""
    text = str(error)
    count = re.search(r"A total of (\d+) objects", text)
    layer = re.search(r"for object <\w+ name=([^,>]+)", text)
    shapes = re.search(r"variable\.shape=(\([^)]*\)), Received: value\.shape=(\([^)]*\))", text)
    if not (count and layer):
        return describe_error(error)
    summary = f"{count.group(1)} layer(s) could not be loaded, e.g. {layer.group(1)}"
    if shapes:
        summary += f" (model {shapes.group(1)}, file {shapes.group(2)})"
    return summary


def describe_error(error):
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__


def result_rows(evaluation):
    """A card's ``results``: one row per (task, set, level) of a ``zoo.evaluate.evaluate_model``
    result, means rounded to 4 decimals."""
    return [{"task": evaluation["task"], "set": r["set"], "level": r["level"],
             **{k: round(r["mean"][k], 4) for k in ("psnr", "ssim", "input_psnr", "input_ssim")}}
            for r in evaluation["results"]]
