"""LiteRT's GPU delegate: float16 exports keep the whole graph in its op set, and the check that
says so names what it would not take."""

import keras
import numpy as np
import pytest

import zoo
from zoo.export import convert, export, gpu_delegate
from zoo.export.gpu_rewrites import TransposedConvShuffle, gpu_rewrite
from zoo.layers import PixelShuffle
from .configs import small
from .test_export import TASK, _colour, _images, _randomised

FLOAT16_MODELS = ["xdncnn", "xsrcnn_f", "xsrcnn_c", "dncnn_s", "vdsr", "srcnn", "srresnet",
                  "xsrresnet"]
DEFAULT_RUN = ("xdncnn", "srresnet", "xsrresnet")   # xUnits; PReLU and pixel shuffle


@pytest.mark.parametrize("name", [
    name if name in DEFAULT_RUN else pytest.param(name, marks=pytest.mark.slow)
    for name in FLOAT16_MODELS])
def test_float16_exports_run_whole_on_the_gpu_delegate(name, tmp_path):
    task = TASK.get(name, "sr" if name == "vdsr" else "denoise")
    keras.utils.set_random_seed(0)
    model = _randomised(zoo.build(name, **small(name)))
    out = tmp_path / f"{name}.tflite"
    # a fixed input, as the delegate wants it (a resizable sub-pixel graph computes the
    # transposed conv's output shape at run time: SHAPE and PACK, outside the table)
    side = 16 if zoo.info(name).upsampling == "sub-pixel" else 48
    card = export(model, out, mode="float16", task=task, input_shape=(side, side),
                  val_data=_images(_colour(name, task), "val", 64), latency_sizes=())
    claim = card["gpu_delegate"]
    assert claim["compatible"] and claim["unsupported_ops"] == [], claim
    assert gpu_delegate(out.read_bytes()) == claim      # the card's claim, checked on the file
    assert "DEPTH_TO_SPACE" not in card["graph"]["ops"]
    assert card["numerics"]["worst_psnr_tflite_vs_keras"] >= 60


def test_pixel_shuffle_as_a_transposed_conv_is_exact(rng):
    for factor, channels in ((2, 12), (3, 18)):
        x = rng.normal(0, 1, (2, 5, 7, channels)).astype("float32")
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(TransposedConvShuffle(factor)(x)),
                                      keras.ops.convert_to_numpy(PixelShuffle(factor)(x)))


def _shuffler():
    x = keras.Input((None, None, 1))
    h = keras.layers.Conv2D(4, 3, padding="same")(x)
    return keras.Model(x, PixelShuffle(2)(h))


def test_depth_to_space_is_named_and_the_rewrite_removes_it():
    model = _shuffler()
    content, _ = convert(model, "float16")
    claim = gpu_delegate(content)
    assert not claim["compatible"] and claim["unsupported_ops"] == ["DEPTH_TO_SPACE x1"]
    content, _ = convert(gpu_rewrite(model), "float16", input_shape=(8, 8))
    assert gpu_delegate(content)["compatible"]


def test_ops_the_analyzer_lets_through_are_still_caught():
    # LiteRT's analyzer alone calls a CUMSUM graph GPU-compatible; the op table does not
    x = keras.Input((None, None, 1))
    y = keras.layers.Lambda(lambda t: keras.ops.cumsum(t, axis=1))(x)
    content, _ = convert(keras.Model(x, keras.layers.Conv2D(1, 3, padding="same")(y)), "float32")
    claim = gpu_delegate(content)
    assert not claim["compatible"] and claim["unsupported_ops"] == ["CUMSUM x1"]


def test_int16_activations_are_not_gpu_compatible(rng):
    x = keras.Input((None, None, 1))
    model = keras.Model(x, keras.layers.Conv2D(2, 3, padding="same", activation="relu")(x))
    calibration = [rng.uniform(0, 1, (1, 16, 16, 1)).astype("float32") for _ in range(4)]
    content, _ = convert(model, "int16x8", calibration=calibration)
    claim = gpu_delegate(content)
    assert not claim["compatible"]
    assert any(item.startswith("int16 tensors") for item in claim["unsupported_ops"]), claim
