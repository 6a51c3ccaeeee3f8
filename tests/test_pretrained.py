"""Shipped weights: publish a run, build with weights=tag, cards that reproduce, clear errors."""

import numpy as np
import pytest
import keras

import zoo
from zoo import pretrained
from zoo.publish import publish
from zoo.evaluate import evaluate_model
from zoo.train import TrainConfig, train

from .data_paths import DATA


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", folder)
    return folder


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from zoo.data import demo_images, write_image
    root = tmp_path_factory.mktemp("pretrained")
    for name, image in demo_images("gray")[:3]:
        write_image(root / "images" / f"{name}.png", image[:64, :64])
    train(TrainConfig(model="xnet", overrides={"layers": 1, "filters": 8},
                      train=[str(root / "images")], val=[str(root / "images")],
                      recipe_overrides={"steps": 6, "steps_per_epoch": 3, "patch_size": 24,
                                        "batch_size": 4}, out=str(root / "run")))
    return root


def test_publish_then_build_by_tag(tiny_run, weights_dir):
    card = publish(tiny_run / "run", "demo-s25", [tiny_run / "images"],
                              weights_dir=weights_dir)
    assert card["overrides"] == {"layers": 1, "filters": 8}
    assert (weights_dir / "xnet-demo-s25.weights.h5").exists()
    listed = pretrained.list_pretrained("xnet")
    assert [c["tag"] for c in listed] == ["demo-s25"]
    model = zoo.build("xnet", weights="demo-s25")  # the card's overrides are applied
    last = keras.saving.load_model(tiny_run / "run" / "last.keras")
    for a, b in zip(model.get_weights(), last.get_weights()):
        np.testing.assert_array_equal(a, b)
    # The card's numbers are what zoo evaluate measures with the shipped file.
    evaluation = evaluate_model(model, zoo.info("xnet"), "denoise", [25], [tiny_run / "images"])
    [row] = card["results"]
    assert (row["task"], row["set"], row["level"]) == ("denoise", "images", 25)
    assert evaluation["results"][0]["mean"]["psnr"] == pytest.approx(row["psnr"], abs=1e-4)


def test_unknown_tag_lists_the_shipped_ones(tiny_run, weights_dir):
    publish(tiny_run / "run", "demo-s25", [tiny_run / "images"], weights_dir=weights_dir)
    with pytest.raises(ValueError, match=r"no pretrained weights 'bsd400' for model 'xnet'; known: demo-s25"):
        zoo.build("xnet", weights="bsd400")


def test_shipped_weights_into_the_wrong_model_fail_clearly(tiny_run, weights_dir):
    publish(tiny_run / "run", "demo-s25", [tiny_run / "images"], weights_dir=weights_dir)
    with pytest.raises(ValueError, match=r"does not fit model 'xnet' with overrides "
                                         r"\{'filters': 16\}: \d+ layer\(s\)"):
        zoo.build("xnet", weights="demo-s25", filters=16)
    corrupt = weights_dir / "corrupt.weights.h5"
    corrupt.write_bytes(b"\x89HDF\r\n garbage")
    with pytest.raises(ValueError, match=r"corrupt\.weights\.h5: not a valid HDF5"):
        zoo.build("xnet", weights=str(corrupt))


CARDS = [c for c in pretrained.list_pretrained() if "source" not in c]  # ours, not official
# the full-width xDnCNN card (a minute here) runs with -m slow; the small SR nets by default
QUICK_CARDS = [pytest.param(c, id=f"{c['model']}-{c['tag']}",
                            marks=pytest.mark.slow if c["model"] == "xdncnn" else ())
               for c in CARDS]
SMALL_SETS = {"Set12", "Set5", "Classic5"}


@pytest.mark.parametrize("card", QUICK_CARDS)
def test_shipped_cards_are_reproduced(card):
    rows = [r for r in card["results"] if r["set"] in SMALL_SETS and (DATA / r["set"]).is_dir()]
    if not rows:
        pytest.skip(f"none of the card's sets is a small test set present in {DATA}")
    model = zoo.build(card["model"], weights=card["tag"])
    for expected in rows:
        evaluation = evaluate_model(model, zoo.info(card["model"]), expected["task"],
                                    [expected["level"]], [DATA / expected["set"]])
        measured = evaluation["results"][0]["mean"]
        assert measured["psnr"] == pytest.approx(expected["psnr"], abs=0.02)
        assert measured["ssim"] == pytest.approx(expected["ssim"], abs=0.0005)


def test_cli_lists_pretrained(capsys):
    from zoo import cli
    assert cli.main(["list", "--pretrained"]) == 0
    out = capsys.readouterr().out
    for card in CARDS:
        assert f"| {card['model']} " in out and card["tag"] in out


# The int8 .tflite shipped beside each weights file, validated on this set when exported.
INT8_SETS = {"xdncnn": "Set12", "xsrcnn_f": "Set5", "srcnn": "Set5"}


@pytest.mark.parametrize("card", QUICK_CARDS)
def test_shipped_int8_tflite_reproduces_its_card(card):
    from zoo.export import LiteRT, read_card
    from zoo.protocol import evaluation_pairs, input_mode, score

    tflite = pretrained.WEIGHTS_DIR / f"{card['model']}-{card['tag']}.int8.tflite"
    assert tflite.is_file(), f"{tflite.name} is missing: every shipped weights file has one"
    written = read_card(tflite)
    assert written["mode"] == "int8" and written["task"] == card["task"]
    data = DATA / INT8_SETS[card["model"]]
    if not data.is_dir():
        pytest.skip(f"{data} not found (set ZOO_DATA to the shared data folder)")
    level = card["levels"][0]
    info = zoo.info(card["model"])
    pairs = evaluation_pairs(data, card["task"], level, mode=input_mode(info, card["task"]))
    runner = LiteRT(tflite)
    scores = [score(runner(degraded.astype(np.float32)), clean, card["task"], level)
              for _, degraded, clean in pairs]
    assert np.mean([s["psnr"] for s in scores]) == pytest.approx(written["numerics"]["tflite"]["psnr"], abs=0.02)
