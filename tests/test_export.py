"""TFLite export: four modes on LiteRT, builtin ops only, numerics against Keras, clear failures."""

import os
import re
import runpy
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
import zoo.pretrained
from zoo.data import demo_images, write_image
from zoo.layers import PixelShuffle, XUnit
from zoo.export import (LiteRT, MODES, calibration_inputs, card_path, convert, export,
                        integer_form, load_model, measure_latency, model_flops, norms_as_convs,
                        read_card, xunit_options)
from zoo.train import TrainConfig, train

from .configs import small

ROOT = Path(__file__).resolve().parents[1]

XNET_FAMILY_AND_MEMNET = ["xdncnn", "xdncnn_rgb", "xnet", "xsrcnn_f", "xsrcnn_c", "xsrresnet",
                          "memnet"]
BASELINES = ["dncnn_s", "dncnn_rgb", "convnet", "srcnn", "srresnet"]
TASK = {"xsrcnn_f": "sr", "xsrcnn_c": "sr", "srcnn": "sr", "xsrresnet": "sr", "srresnet": "sr",
        "memnet": "jpeg"}


def _randomised(model, seed=0):
    """The model with random BN statistics, affine terms and biases, so that no layer is an
    identity the converter could drop and the comparison with Keras means something."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        kind = weight.path.rsplit("/", 1)[-1]
        shape = tuple(weight.shape)
        if kind in ("gamma", "moving_variance"):
            weight.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
        elif kind in ("beta", "moving_mean", "bias"):
            weight.assign(rng.normal(0, 0.05, shape).astype("float32"))
    return model


def _images(colour, split, size, count=1):
    """Centre crops of the built-in demo photographs."""
    crops = []
    for name, image in demo_images(colour, split=split)[:count]:
        top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
        crops.append((name, image[top:top + size, left:left + size]))
    return crops


def _colour(name, task):
    info = zoo.info(name)
    return "RGB" if info.input == "RGB" else ("gray" if task == "denoise" else "Y")


def _export_all_modes(name, tmp_path):
    task = TASK.get(name, "denoise")
    colour = _colour(name, task)
    keras.utils.set_random_seed(0)  # the same kernels every run: int8 agreement is not a draw
    model = _randomised(zoo.build(name, **small(name)))
    sub_pixel = zoo.info(name).upsampling == "sub-pixel"
    cards = {}
    for mode in MODES:
        cards[mode] = export(
            model, tmp_path / f"{name}_{mode}.tflite", mode=mode, task=task,
            val_data=_images(colour, "val", 64),  # large enough for the resize probes
            calibration_data=_images(colour, "train", 256 if sub_pixel else 96, count=3),
            calibration_samples=8, latency_sizes=())
    return cards


def _check_modes(cards, tmp_path, name):
    for mode, card in cards.items():
        assert card["graph"]["builtin_only"], (mode, card["graph"])
        assert card["graph"]["flex_ops"] == {} and card["numerics"]["images"] == 1
        assert (tmp_path / f"{name}_{mode}.tflite").stat().st_size == card["file"]["size_bytes"]
        assert card_path(tmp_path / f"{name}_{mode}.tflite").is_file()
        assert card["resizable"]["works"], card["resizable"]
    assert cards["float32"]["numerics"]["max_abs_diff_vs_keras"] <= 1e-4
    assert cards["float16"]["numerics"]["worst_psnr_tflite_vs_keras"] >= 60
    assert cards["dynamic"]["numerics"]["worst_psnr_tflite_vs_keras"] >= 30
    assert cards["int8"]["numerics"]["worst_psnr_tflite_vs_keras"] >= 25
    int8 = cards["int8"]
    assert int8["graph"]["float_ops"] == {}, int8["graph"]["float_ops"]
    assert int8["input"]["dtype"] == int8["output"]["dtype"] == "int8"
    assert int8["input"]["quantization"]["scale"] > 0
    assert "QUANTIZE" not in int8["graph"]["ops"] or name == "memnet"  # memnet requantizes concat
    # int16 activations on a 256x finer grid, the int8 weights as in int8 (LiteRT has no int16
    # DEPTH_TO_SPACE or PRELU, which run in float): at least as close to Keras as int8, within
    # 0.1 dB where int8 weight rounding dominates both (int8 holds batch-norm scales as
    # per-channel weights, int16x8 as a multiply)
    int16 = cards["int16x8"]
    assert set(int16["graph"]["float_ops"]) <= {"QUANTIZE", "DEQUANTIZE", "DEPTH_TO_SPACE", "PRELU"}
    assert int16["input"]["dtype"] == int16["output"]["dtype"] == "int16"
    assert (int16["numerics"]["worst_psnr_tflite_vs_keras"]
            >= int8["numerics"]["worst_psnr_tflite_vs_keras"] - 0.1)
    sizes = {mode: card["file"]["size_bytes"] for mode, card in cards.items()}
    assert sizes["float16"] < sizes["float32"] and sizes["int8"] < sizes["float16"]
    layers = zoo.build(name, **small(name)).layers
    units = sum(isinstance(layer, XUnit) for layer in layers)
    # float16 (the GPU delegate's mode) runs pixel shuffles as one-hot transposed convs
    shuffles = sum(isinstance(layer, PixelShuffle) for layer in layers)
    assert cards["float16"]["export_options"].get("transposed_conv_shuffles", 0) == shuffles
    options = {mode: {k: v for k, v in card["export_options"].items()
                      if k != "transposed_conv_shuffles"} for mode, card in cards.items()}
    if units:
        # 9x9 depthwise convs split into pieces of <= 5x5 taps; int8 gates clipped, and the
        # xUnits fed by a conv equalised
        assert all(options[m] == {"xunit_split": 5} for m in MODES[:3])
        assert {k: v for k, v in int8["export_options"].items()
                if k not in ("pointwise_batch_norms", "equalised_xunits",
                             "batch_norms_folded_into_convs")} == {
                    "xunit_split": 5, "xunit_gate_clip": 3.0}
        assert 1 <= int8["export_options"]["equalised_xunits"] <= units
        # every batch norm not after a conv, and each xUnit's first one, as a 1x1 depthwise
        # conv; those after a conv folded into it
        after_conv = [isinstance(layer._inbound_nodes[0].input_tensors[0]._keras_history.operation,
                                 keras.layers.Conv2D)
                      for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
        assert int8["export_options"]["pointwise_batch_norms"] == units + after_conv.count(False)
        assert int8["export_options"].get("batch_norms_folded_into_convs", 0) == \
            after_conv.count(True)
    else:
        assert all(options[m] == {} for m in cards if m != "int8")


# the default run converts xDnCNN, the compact xNet with batch norms outside its xUnits; the rest
# of the matrix (xSRCNNf, MemNet's requantized concat) runs with -m slow
@pytest.mark.parametrize("name", [
    name if name == "xdncnn" else pytest.param(name, marks=pytest.mark.slow)
    for name in XNET_FAMILY_AND_MEMNET])
def test_exports_in_all_four_modes_with_builtin_ops(name, tmp_path):
    _check_modes(_export_all_modes(name, tmp_path), tmp_path, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", BASELINES)
def test_relu_baselines_export_in_all_four_modes(name, tmp_path):
    _check_modes(_export_all_modes(name, tmp_path), tmp_path, name)


def test_file_has_the_one_signature_android_reads_and_the_models_weights(rng):
    # the lean SavedModel (zoo.export.conversion) must carry the weights: tracking Keras
    # variables instead of their tf.Variables gives a NaN file without error
    keras.utils.set_random_seed(0)
    model = _randomised(zoo.build("xsrcnn_f"))
    content, _ = convert(model, "float32", input_shape=(12, 12))
    interpreter = LiteRT(content).interpreter
    assert interpreter.get_signature_list() == {
        "serving_default": {"inputs": ["args_0"], "outputs": ["output_0"]}}
    assert interpreter.get_input_details()[0]["name"] == "serving_default_args_0:0"
    x = rng.random((1, 12, 12, 1), dtype=np.float32)
    y = interpreter.get_signature_runner("serving_default")(args_0=x)["output_0"]
    np.testing.assert_allclose(y, np.asarray(model(x)), atol=1e-4)
    assert np.abs(y).max() > 0


def test_resizable_model_runs_at_two_sizes(tmp_path, rng):
    model = _randomised(zoo.build("xsrresnet", blocks=1, filters=16))
    content, report = convert(model, "float32")
    assert report.builtin_only
    runner = LiteRT(content)
    assert runner.resizable
    for height, width in ((12, 12), (17, 10)):
        x = rng.random((height, width, 3), dtype=np.float32)
        y = runner(x)
        assert y.shape == (4 * height, 4 * width, 3)
        assert np.abs(y - np.asarray(model(x[None]))[0]).max() <= 1e-4


def test_xunit_split_is_exact_and_can_be_turned_off(tmp_path, rng):
    model = _randomised(zoo.build("xdncnn", filters=16, blocks=1))  # two 9x9 xUnits
    x = rng.random((1, 40, 36, 1), dtype=np.float32)
    for pieces in (3, 5):
        split = xunit_options(model, split=pieces)
        assert np.abs(np.asarray(split(x)) - np.asarray(model(x))).max() <= 1e-5
    memnet = zoo.build("memnet", blocks=1, recursions=1, filters=8)
    assert xunit_options(memnet, split=3, gate_clip=3) is memnet  # no xUnit: nothing to change
    val = _images("gray", "val", 32)
    cards = {s: export(model, tmp_path / f"s{s}.tflite", xunit_split=s, val_data=val,
                       latency_sizes=()) for s in (None, 0)}
    assert cards[None]["graph"]["ops"]["DEPTHWISE_CONV_2D"] == 2 * 4  # 5x5, 5x4, 4x5, 4x4
    assert cards[0]["graph"]["ops"]["DEPTHWISE_CONV_2D"] == 2
    assert cards[0]["export_options"] == {} and not any("5x5" in n for n in cards[0]["notes"])
    for card in cards.values():
        assert card["numerics"]["max_abs_diff_vs_keras"] <= 1e-4


def test_fixed_int8_export_runs_xunits_on_pixel_blocks(tmp_path, rng):
    model = _randomised(zoo.build("xdncnn", filters=16, blocks=1))  # two 9x9 xUnits
    x = rng.random((1, 42, 37, 1), dtype=np.float32)  # padded to 44x40, cropped back
    blocks = xunit_options(model, block=4)
    assert np.abs(np.asarray(blocks(x)) - np.asarray(model(x))).max() <= 1e-5
    # calibration images smaller than the fixed input are mirrored up to it
    card = export(model, tmp_path / "b.tflite", mode="int8", input_shape=(42, 37),
                  val_data=_images("gray", "val", 48), calibration_samples=4,
                  calibration_data=_images("gray", "train", 32, count=2), latency_sizes=())
    assert card["export_options"]["xunit_block"] == 4 and "xunit_split" not in card["export_options"]
    assert card["calibration"]["patch"] == [42, 37]
    assert card["numerics"]["images"] == 1 and not any("validated on" in n for n in card["notes"])
    ops = card["graph"]["ops"]
    # the 9x9s run as 2 grouped convs beside 3 dense ones; the only depthwise convs left are the
    # 1x1 batch norms (one per xUnit, one before the block's conv)
    assert ops["CONV_2D"] >= 2 + 3 and card["export_options"]["pointwise_batch_norms"] == 3
    assert ops.get("DEPTHWISE_CONV_2D", 0) == 3
    assert card["graph"]["float_ops"] == {} and card["graph"]["builtin_only"]
    assert card["numerics"]["worst_psnr_tflite_vs_keras"] >= 30
    assert any("4x4 pixel blocks" in note for note in card["notes"])
    resizable = export(model, tmp_path / "r.tflite", mode="int8", val_data=_images("gray", "val", 32),
                       calibration_samples=4, calibration_data=_images("gray", "train", 32),
                       latency_sizes=())
    assert resizable["export_options"]["xunit_split"] == 5  # run-time shapes: the split stays
    assert "xunit_block" not in resizable["export_options"]
    # asked for, blocks work resizable too: pad and crop sized at run time
    content, _ = convert(blocks, "float32")
    runner = LiteRT(content)
    for height, width in ((42, 37), (16, 20)):
        x = rng.random((height, width, 1), dtype=np.float32)
        assert np.abs(runner(x) - np.asarray(model(x[None]))[0]).max() <= 1e-4


@pytest.mark.parametrize("task,level,ratio", [("sr", 3, 1), ("sr", 3, 3), ("denoise", 25, 1)])
def test_calibration_mirrors_small_images_up_to_a_large_fixed_input(task, level, ratio):
    images = _images("gray", "train", 100, count=2)  # 100: not a multiple of the scale
    batches = calibration_inputs(images, task=task, level=level, mode="gray", ratio=ratio,
                                 upsampling="sub-pixel" if ratio > 1 else "interpolated",
                                 input_shape=(120, 90), samples=3)
    assert [b.shape for b in batches] == [(1, 120, 90, 1)] * 3
    first = batches[0][0]  # mirrored: the row after the patch repeats its last row
    side = 99 // ratio if task == "sr" else 100
    assert np.array_equal(first[side], first[side - 1])


def test_batch_norms_as_pointwise_convs_are_exact(rng):
    # the int8 form: per-channel weights instead of a multiply by constants on one 8-bit range
    model = _randomised(zoo.build("xdncnn", filters=16, blocks=2))
    form = norms_as_convs(xunit_options(model, split=5, pointwise_norm=True))
    assert not any(type(layer) is keras.layers.BatchNormalization for layer in form.layers)
    assert sum(type(layer) is keras.layers.DepthwiseConv2D for layer in form.layers) == 2
    assert all(unit.pointwise_norm for unit in form.layers if isinstance(unit, XUnit))
    for height, width in ((40, 36), (7, 5)):
        x = rng.random((1, height, width, 1), dtype=np.float32)
        assert np.abs(np.asarray(form(x)) - np.asarray(model(x))).max() <= 1e-5
    # conv -> BN: folded into the conv (what the converter does), so no layer is added
    dncnn = _randomised(zoo.build("dncnn_s", depth=4, filters=8))
    folded = norms_as_convs(dncnn)
    assert not any(type(layer) is keras.layers.BatchNormalization for layer in folded.layers)
    assert len(folded.layers) == len(dncnn.layers) - 2  # its two batch norms
    x = rng.random((1, 40, 36, 1), dtype=np.float32)
    assert np.abs(np.asarray(folded(x)) - np.asarray(dncnn(x))).max() <= 1e-5
    assert norms_as_convs(folded) is folded


def test_fixed_shape_model_takes_its_own_size_only(tmp_path):
    val = _images("gray", "val", 48) + [("small", np.zeros((20, 50, 1), np.float32))]
    card = export("xnet", tmp_path / "fixed.tflite", overrides=dict(layers=1, filters=8),
                  input_shape=(24, 40), val_data=val, latency_sizes=(256,), latency_runs=1)
    assert card["numerics"]["images"] == 1
    assert "validated on 1 of 2 images: the others are smaller than the 24x40 input" in card["notes"]
    assert card["input"]["shape"] == [1, 24, 40, 1]
    assert card["numerics"]["per_image"][0]["input_size"] == [24, 40]
    assert [r["input_size"] for r in card["latency"]["results"]] == [[24, 40]] * 3
    assert card["resizable"]["exported"] is False and card["resizable"]["float32_probe"]["works"]
    runner = LiteRT(tmp_path / "fixed.tflite")
    with pytest.raises(ValueError, match="24x40 inputs only"):
        runner(np.zeros((32, 32, 1), np.float32))


def test_card_has_tensors_latency_and_machine(tmp_path):
    card = export("xnet", tmp_path / "m.tflite", overrides=dict(layers=1, filters=8),
                  mode="int8", io_dtype="uint8", val_data=_images("gray", "val", 32),
                  calibration_data=_images("gray", "train", 64), calibration_samples=4,
                  latency_sizes=(32, 48), latency_runs=2)
    written = read_card(tmp_path / "m.tflite")  # the YAML beside the file says what export returned
    assert card["input"]["dtype"] == "uint8" and written["input"] == card["input"]
    assert written["numerics"] == card["numerics"] and written["mode"] == "int8"
    results = card["latency"]["results"]
    settings = {(r["input_size"][0], r["threads"], r["xnnpack"]) for r in results}
    # XNNPACK everywhere; the builtin kernels where the faster runtime is picked
    assert settings == {(s, t, True) for s in (32, 48) for t in (1, 2)} | {(48, 2, False)}
    every = measure_latency((tmp_path / "m.tflite").read_bytes(), [(32, 32)], runs=1, every=True)
    assert {(r["threads"], r["xnnpack"]) for r in every} == {(1, True), (1, False), (2, True),
                                                             (2, False)}
    assert all(r["median_ms"] > 0 and r["gflops_per_s"] > 0 for r in results)
    faster = card["latency"]["default_runtime"]["xnnpack"]
    assert LiteRT(tmp_path / "m.tflite").xnnpack is faster  # the runner follows the card
    assert LiteRT(tmp_path / "m.tflite", xnnpack=not faster).xnnpack is (not faster)
    assert "tensorflow" in card["machine"] and written["machine"]["processor"]
    assert written["latency"] == card["latency"]
    # the card times each phase of the export, and the phases fit in the whole
    seconds = card["export_seconds"]
    assert {"loading", "calibration inputs", "scale equalisation", "conversion and calibration",
            "latency", "validation"} <= set(seconds)
    assert 0 < sum(s for phase, s in seconds.items() if phase != "total") <= seconds["total"] + 0.5
    assert card["calibration"]["samples"] == 4
    assert card["parameters"]["kernels"] == zoo.count_params(zoo.build("xnet", layers=1, filters=8),
                                                             "kernels")


def test_flop_counter_matches_the_layer_arithmetic():
    assert model_flops(zoo.build("xdncnn"), 32, 32) == 601_344 * 32 * 32
    # xSRCNNf: 2 x (81*64 + 81*64 + 9*64*32 + 81*32 + 25*32) multiply-adds per pixel.
    assert model_flops(zoo.build("xsrcnn_f"), 16, 16) == 64_384 * 16 * 16
    # MemNet's shared convs count once per recursion.
    small = zoo.build("memnet", blocks=1, recursions=2, filters=4)
    per_pixel = 2 * (9 * 4 + 2 * 2 * 9 * 16 + (1 + 2) * 4 * 4 + 9 * 4)
    assert model_flops(small, 8, 8) == per_pixel * 64


def test_nlrn_exports_with_builtin_ops_at_a_fixed_shape(tmp_path):
    model = _randomised(zoo.build("nlrn", states=2, filters=16, embed_filters=8, neighbourhood=7))
    card = export(model, tmp_path / "nlrn.tflite", input_shape=(32, 32),
                  val_data=_images("gray", "val", 32), latency_sizes=())
    assert card["graph"]["builtin_only"] and card["graph"]["flex_ops"] == {}
    assert card["numerics"]["max_abs_diff_vs_keras"] <= 1e-4
    probe = card["resizable"]["float32_probe"]
    assert probe["works"], probe  # the resizable NLRN also runs on LiteRT, at two odd sizes


@pytest.mark.slow
def test_full_nlrn_exports_with_builtin_ops_at_a_fixed_shape(tmp_path):
    model = _randomised(zoo.build("nlrn"))  # T = 12, 128 filters, q = 35
    card = export(model, tmp_path / "nlrn.tflite", input_shape=(48, 48),
                  val_data=_images("gray", "val", 48), latency_sizes=())
    assert card["graph"]["builtin_only"] and card["numerics"]["max_abs_diff_vs_keras"] <= 1e-4
    assert card["resizable"]["float32_probe"]["works"], card["resizable"]


@pytest.mark.slow
def test_full_xdncnn_int8_on_the_built_in_images(tmp_path):
    card = export(_randomised(zoo.build("xdncnn")), tmp_path / "xdncnn.tflite", mode="int8",
                  latency_sizes=(256,), latency_runs=2)
    assert card["numerics"]["images"] == 2 and card["graph"]["float_ops"] == {}
    assert card["graph"]["builtin_only"] and len(card["latency"]["results"]) == 3
    assert card["numerics"]["worst_psnr_tflite_vs_keras"] >= 30


def _patch_model():
    x = keras.Input((None, None, 1), name="degraded")
    patches = keras.layers.Lambda(lambda t: tf.image.extract_patches(
        t, [1, 3, 3, 1], [1, 1, 1, 1], [1, 1, 1, 1], "SAME"), name="patches")(x)
    return keras.Model(x, keras.layers.Conv2D(1, 1, name="mix")(patches), name="patch_net")


def test_flex_ops_fail_the_default_export_with_their_list(tmp_path):
    out = tmp_path / "patch.tflite"
    with pytest.raises(ValueError, match=r"FlexExtractImagePatches x1.*--allow-select-ops"):
        export(_patch_model(), out, val_data=_images("gray", "val", 32), latency_sizes=())
    assert list(tmp_path.iterdir()) == []
    card = export(_patch_model(), out, allow_select_ops=True, latency_sizes=())
    assert out.is_file() and card["graph"]["flex_ops"] == {"FlexExtractImagePatches": 1}
    assert not card["numerics"]["validated"] and not card["graph"]["builtin_only"]


def test_float_islands_in_an_int8_graph_are_reported(tmp_path):
    x = keras.Input((None, None, 1))
    h = keras.layers.Conv2D(4, 3, padding="same")(x)
    h = keras.layers.Lambda(lambda t: keras.ops.square(t))(h)
    model = keras.Model(x, keras.layers.Conv2D(1, 3, padding="same")(h), name="square_net")
    card = export(model, tmp_path / "sq.tflite", mode="int8", val_data=_images("gray", "val", 32),
                  calibration_data=_images("gray", "train", 64), calibration_samples=4,
                  latency_sizes=())
    assert "SQUARE" in card["graph"]["float_ops"] and "DEQUANTIZE" in card["graph"]["float_ops"]
    assert any("SQUARE" in note for note in card["notes"])


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """An xnet's .weights.h5 and .keras files, a corrupt one of each, and a .pt file."""
    folder = tmp_path_factory.mktemp("weights")
    model = zoo.build("xnet", layers=2, filters=8)
    model.save_weights(folder / "xnet.weights.h5")
    model.save(folder / "xnet.keras")
    (folder / "corrupt.weights.h5").write_bytes(b"\x89HDF\r\n" + os.urandom(200))
    (folder / "corrupt.keras").write_bytes(b"PK\x03\x04" + os.urandom(200))
    (folder / "xnet.pt").write_bytes(b"PK\x03\x04" + os.urandom(200))
    return folder


@pytest.mark.parametrize("model,weights,overrides,error,message", [
    ("xdncn", None, None, ValueError, r"Unknown model 'xdncn'.*'xdncnn'"),
    ("xnet", "missing.weights.h5", None, FileNotFoundError, "not found"),
    ("xnet", "corrupt.weights.h5", dict(layers=2, filters=8), ValueError,
     "not a valid HDF5 .weights.h5"),
    ("xnet", "corrupt.keras", None, ValueError, r"corrupt\.keras"),
    ("xdncnn", "xnet.weights.h5", None, ValueError,
     r"xnet\.weights\.h5 does not fit model 'xdncnn'"),
    ("xnet", "xnet.weights.h5", dict(layers=3, filters=8), ValueError,
     r"does not fit model 'xnet' with overrides \{'layers': 3"),
    ("xdncnn", "xnet.keras", None, ValueError, "holds a 'xnet' model, not 'xdncnn'"),
    ("xnet", "no-such-tag", None, ValueError, "no pretrained weights 'no-such-tag'"),
    ("xnet", "xnet.pt", None, ValueError, r"must be a \.weights\.h5 file.*xnet\.pt"),
])
def test_bad_model_or_weights_fail_clearly_and_write_nothing(saved, tmp_path, model, weights,
                                                              overrides, error, message):
    with pytest.raises(error, match=message) as raised:
        is_file = weights and weights.endswith((".h5", ".keras", ".pt"))
        export(model, tmp_path / "out.tflite", weights=saved / weights if is_file else weights,
               overrides=overrides, latency_sizes=())
    assert "\n" not in str(raised.value)
    assert list(tmp_path.iterdir()) == []


def test_shipped_weights_export_and_beat_bicubic(tmp_path):
    # a tag that ships in zoo/weights/ (official tags need the network or ZOO_OFFICIAL_MIRROR)
    tag = next(card["tag"] for card in zoo.pretrained.list_pretrained("xsrcnn_f")
               if "file" in card)
    card = export("xsrcnn_f", tmp_path / "sr.tflite", weights=tag, task="sr", level=3,
                  mode="float16", val_data=_images("Y", "val", 96, count=2), latency_sizes=())
    numerics = card["numerics"]
    assert card["weights"] == tag and numerics["worst_psnr_tflite_vs_keras"] >= 60
    assert numerics["tflite"]["psnr"] > numerics["degraded"]["psnr"] + 0.5


def test_weights_files_load_into_the_exported_model(saved, tmp_path):
    reference = load_model("xnet", saved / "xnet.keras")
    loaded = load_model("xnet", saved / "xnet.weights.h5", layers=2, filters=8)
    x = np.random.default_rng(1).random((1, 16, 16, 1), dtype=np.float32)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(reference(x)), atol=1e-6)


def _script(args, capsys):
    """``export_tflite.py ARGS`` in this process: ``(exit code, stdout, stderr)``."""
    script = runpy.run_path(str(ROOT / "export_tflite.py"))
    capsys.readouterr()
    code = script["main"](args)
    out, err = capsys.readouterr()
    return code, out, err


def test_command_line_exports_and_fails_in_one_line(saved, tmp_path, capsys):
    val = tmp_path / "val"
    for name, image in _images("gray", "val", 40):
        write_image(val / f"{name}.png", image)
    out = tmp_path / "cli" / "xnet16.tflite"
    result = _script(["--model", "xnet", "--weights", str(saved / "xnet.weights.h5"),
                      "--set", "layers=2", "--set", "filters=8", "--mode", "float16",
                      "--val", str(val), "--latency-sizes", "32", "--latency-runs", "1",
                      "--out", str(out)], capsys)
    assert result[0] == 0, result[2][-2000:]
    assert out.is_file() and card_path(out).is_file()
    assert "TFLite vs Keras" in result[1] and "XNNPACK" in result[1]
    assert re.search(r"^export: \d+ s \(loading \d+ s, conversion \d+ s, ", result[1], re.M)
    assert "zoo export: validation ..." in result[2]     # each phase announced as it starts
    code, _, stderr = _script(["--model", "xnet", "--weights", str(saved / "corrupt.keras"),
                               "--out", str(tmp_path / "bad.tflite")], capsys)
    assert code == 2 and "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "corrupt.keras" in errors[0]
    assert not (tmp_path / "bad.tflite").exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small xNet after a short denoising run (sigma 25) on crops of the demo photographs."""
    folder = tmp_path_factory.mktemp("train")
    for name, image in _images("gray", "train", 128, count=6):
        write_image(folder / "images" / f"{name}.png", image)
    run = train(TrainConfig(model="xnet", overrides={"layers": 3, "filters": 32},
                            train=[str(folder / "images")], val=[str(folder / "images")],
                            recipe_overrides={"steps": 150, "steps_per_epoch": 150,
                                              "patch_size": 32, "batch_size": 16},
                            tensorboard_images=0, out=str(folder / "run")))
    return folder, run


@pytest.mark.slow
def test_int8_after_short_training_stays_close_to_float(trained, tmp_path):
    folder, run = trained
    assert run["val_psnr"] > run["input_psnr"] + 1  # the float model learned to denoise
    cards = {clip: export("xnet", tmp_path / f"xnet_int8_{clip}.tflite", mode="int8",
                          weights=folder / "run" / "best.keras", gate_clip=clip,
                          val_data=_images("gray", "val", 128, count=2),
                          calibration_data=[str(folder / "images")], calibration_samples=64,
                          latency_sizes=())
             for clip in (3.0, None)}
    for clip, card in cards.items():
        numerics = card["numerics"]
        print(f"\nint8 after {run['steps']} steps, gate clip {clip}: Keras "
              f"{numerics['keras']['psnr']:.3f} dB, TFLite int8 "
              f"{numerics['tflite']['psnr']:.3f} dB, "
              f"drop {numerics['quantization_drop_db']:.3f} dB, TFLite vs Keras "
              f"{numerics['worst_psnr_tflite_vs_keras']:.2f} dB")
        assert numerics["tflite"]["psnr"] > numerics["degraded"]["psnr"] + 1
        assert numerics["quantization_drop_db"] <= 0.5
        assert card["graph"]["float_ops"] == {}
    # Clipping the gate argument gives its int8 steps a finer grid: closer to Keras.
    clipped, plain = cards[3.0]["numerics"], cards[None]["numerics"]
    assert clipped["worst_psnr_tflite_vs_keras"] > plain["worst_psnr_tflite_vs_keras"] + 3
    # 0.07-0.11 dB measured (training is not bitwise repeatable across machines): the 0.1 dB
    # goal is met about, not always; the clip must help either way.
    assert clipped["quantization_drop_db"] < plain["quantization_drop_db"]
    assert clipped["quantization_drop_db"] <= 0.2
    assert any("clip(d, -3, 3)" in note for note in cards[3.0]["notes"])


# --- per-channel scale equalisation (int8) ---------------------------------------------------------

from zoo.export import equalise_scales  # noqa: E402

from .data_paths import DATA  # noqa: E402

OFFICIAL_DIR = Path(os.environ.get("ZOO_OFFICIAL_MIRROR") or DATA.parent / "official")
needs_official = pytest.mark.skipif(
    not OFFICIAL_DIR.is_dir() or not (DATA / "Set12").is_dir(),
    reason=f"the authors' files are not in {OFFICIAL_DIR} (set ZOO_OFFICIAL_MIRROR) or "
           "Set12 is absent")


@pytest.mark.parametrize("name", ["xdncnn", "xsrcnn_f"])
def test_equalised_scales_are_exact_and_level_the_channels(name):
    keras.utils.set_random_seed(0)
    model = _randomised(zoo.build(name, **small(name)))
    # make a few channels of the first conv 30x larger, as in the converged xDnCNN
    first = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    kernel = keras.ops.convert_to_numpy(first.kernel)
    kernel[..., :3] *= 30
    first.kernel.assign(kernel)
    colour = _colour(name, TASK.get(name, "denoise"))
    inputs = [image[None] for _, image in _images(colour, "train", 32, count=2)]
    equalised = equalise_scales(model, inputs)
    assert equalised is not model
    x = _images(colour, "val", 40)[0][1][None]
    np.testing.assert_allclose(equalised(x), model(x), atol=2e-5)
    probe = keras.Model(equalised.inputs, equalised.get_layer(first.name).output)
    peaks = np.abs(keras.ops.convert_to_numpy(probe(np.concatenate(inputs)))).max((0, 1, 2))
    assert peaks.max() / peaks.min() < 1.01


def test_integer_form_is_exact_and_int8_holds_no_batch_norm():
    """The graph an integer export converts and ``--qat`` fine-tunes: int8 turns every batch
    norm into a 1x1 conv (or folds it), int16x8 keeps them; both equalise and split xUnits."""
    keras.utils.set_random_seed(0)
    model = _randomised(zoo.build("xdncnn", filters=16, blocks=2))
    inputs = [image[None] for _, image in _images("gray", "train", 32, count=2)]
    x = _images("gray", "val", 40)[0][1][None]
    for mode in ("int8", "int16x8"):
        form = integer_form(model, inputs, mode=mode)
        np.testing.assert_allclose(form(x), model(x), atol=2e-5)
        units = [layer for layer in form.layers if isinstance(layer, XUnit)]
        assert len(units) == 3 and all(unit.split == 5 and unit.gate_clip == 3 for unit in units)
        norms = [layer for layer in form.layers if type(layer) is keras.layers.BatchNormalization]
        assert all(unit.pointwise_norm == (mode == "int8") for unit in units)
        assert len(norms) == (0 if mode == "int8" else 2)


@needs_official
@pytest.mark.slow
def test_official_xdncnn_int8_keeps_its_equalised_accuracy(keras_home, tmp_path):
    """The authors' converged xDnCNN: the default int8 export lost 7.5 dB on Set12 01-02
    before equalisation (measured 2.7-3.0 dB after it)."""
    card = export("xdncnn", tmp_path / "x.tflite", mode="int8", weights="official-s25",
                  val_data=DATA / "Set12", val_limit=2, latency_sizes=())
    assert card["export_options"]["equalised_xunits"] == 8
    assert card["numerics"]["quantization_drop_db"] < 3.5


@needs_official
@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "BSD400").is_dir(), reason=f"BSD400 is not in {DATA}")
def test_official_xdncnn_int16x8_calibrated_on_its_training_set_meets_0_1_db(keras_home, tmp_path):
    """int16 activations, batch norms as they are, ranges from BSD400 (measured 0.04 dB on Set12
    01-03); with ranges from the built-in photos the same export loses ~1.9 dB."""
    card = export("xdncnn", tmp_path / "x.tflite", mode="int16x8", weights="official-s25",
                  calibration_data=DATA / "BSD400", val_data=DATA / "Set12", val_limit=2,
                  latency_sizes=())
    assert "pointwise_batch_norms" not in card["export_options"]
    assert card["input"]["dtype"] == "int16" and card["graph"]["float_ops"] == {}
    assert card["numerics"]["quantization_drop_db"] <= 0.1


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("ZOO_OFFICIAL_MIRROR", str(OFFICIAL_DIR))
    return tmp_path / "keras"
