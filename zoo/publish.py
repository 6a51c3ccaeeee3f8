"""Publishing weights with a measured card: a training run as a shipped tag, or an official tag.

Kept apart from :mod:`zoo.pretrained` (which only reads cards and loads weights) because it
builds and evaluates models: it sits above the registry and the protocol.
"""

import datetime
import json
from pathlib import Path

import keras

from zoo import models, official, pretrained
from zoo.evaluate import evaluate_model
from zoo.files import write_atomically, write_text_atomically
from zoo.pretrained import result_rows


def publish(run_dir, tag, test_sets, *, checkpoint="last", weights_dir=None, note=""):
    """Ships a training run's weights as ``<model>-<tag>`` with a measured card.

    Reads ``run.json`` and ``<checkpoint>.keras`` of ``run_dir`` (``last`` by
    default: ``best`` was chosen on the validation images, which must then not
    be a test set of the card), writes the weights and evaluates them on
    ``test_sets`` at the run's levels under SPEC §4.  Returns the card.
    """
    run_dir, weights_dir = Path(run_dir), Path(weights_dir or pretrained.WEIGHTS_DIR)
    run = json.loads((run_dir / "run.json").read_text())
    config = run["config"]
    name, overrides = config["model"], config["overrides"]
    if checkpoint not in ("last", "best"):
        raise ValueError(f"checkpoint must be 'last' or 'best', got {checkpoint!r}")
    trained = keras.saving.load_model(run_dir / f"{checkpoint}.keras", compile=False)
    model = models.build(name, **overrides)
    model.set_weights(trained.get_weights())
    weights_dir.mkdir(parents=True, exist_ok=True)
    target = weights_dir / f"{name}-{tag}.weights.h5"
    write_atomically(target, model.save_weights)

    steps, seconds = run.get("steps"), run.get("wall_seconds")
    if steps is None:  # an interrupted run: the checkpoint's record and file times tell
        record = run_dir / f"{checkpoint}.json"
        if not record.exists():
            raise ValueError(f"{run_dir} did not finish and has no {record.name} saying at which "
                             f"step {checkpoint}.keras was saved")
        steps = json.loads(record.read_text())["epoch"] * run["recipe"]["steps_per_epoch"]
        seconds = round((run_dir / f"{checkpoint}.keras").stat().st_mtime
                        - (run_dir / "run.json").stat().st_mtime)
    evaluation = evaluate_model(model, models.info(name), config["task"], config["levels"],
                                test_sets)
    results = result_rows(evaluation)
    entry = {
        "model": name, "tag": tag, "overrides": overrides, "task": config["task"],
        "levels": config["levels"], "file": target.name, "bytes": target.stat().st_size,
        "results": results, "protocol": "SPEC §4 (zoo evaluate)",
        "training": {"data": config["train"], "validation": config["val"],
                     "recipe": run["recipe"], "steps": steps, "checkpoint": checkpoint,
                     "wall_seconds": seconds, "seed": config["seed"],
                     "versions": run["versions"], "best_val_psnr": _best(run_dir)},
        "date": datetime.date.today().isoformat(), "note": note,
    }
    _write_json(weights_dir / f"{name}-{tag}.card.json", entry)
    return entry


def publish_official(model, tag, data_root, *, cards_dir=None):
    """Measures the official ``tag`` of ``model`` on the card's test sets (folders under
    ``data_root``; those missing are left out) and writes its card.  Returns the card."""
    entry = official.get(model, tag)
    built = models.build(model, weights=tag)
    card = official.base_card(entry)
    paper = {(p["task"], p["set"], p["level"]): p["psnr"] for p in card["paper"]}
    for task, levels, sets in entry.evaluations:
        folders = [Path(data_root) / s for s in sets if (Path(data_root) / s).is_dir()]
        if not folders:
            continue
        evaluation = evaluate_model(built, models.info(model), task, list(levels), folders)
        for row in result_rows(evaluation):
            row["paper_psnr"] = paper.get((task, row["set"], row["level"]), "not reported")
            card["results"].append(row)
    card.update(protocol="SPEC §4 (zoo evaluate)", date=datetime.date.today().isoformat())
    folder = Path(cards_dir or official.CARDS_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / f"{entry.cache_name}.card.json", card)
    return card


def _write_json(path, value):
    write_text_atomically(path, json.dumps(value, indent=2) + "\n")


def _best(run_dir):
    meta = Path(run_dir) / "best.json"
    return json.loads(meta.read_text()) if meta.exists() else None
