"""MATLAB-compatible imresize (SPEC §4): against MATLAB-made Set5 low-res files, numpy vs TF."""

import math

import numpy as np
import pytest
import tensorflow as tf

from zoo.data.io import read_image
from zoo.data.resize import imresize, imresize_np, modcrop

from .data_paths import DATA, needs

NAMES = ["baby", "bird", "butterfly", "head", "woman"]
IMPLS = {"numpy": imresize_np, "tf": lambda img, scale: imresize(img, scale).numpy()}


def _match(scale, impl, dtype):
    """(fraction of equal pixels, largest difference) of our x(1/scale) vs Set5_LR_bicubic."""
    equal = total = worst = 0
    for name in NAMES:
        hr = modcrop(read_image(DATA / "Set5" / f"{name}.png", dtype="uint8"), scale)
        lr = read_image(DATA / "Set5_LR_bicubic" / f"X{scale}" / f"{name}x{scale}.png", dtype="uint8")
        if dtype == "uint8":
            out = IMPLS[impl](hr, 1 / scale)
        else:
            out = np.floor(np.clip(IMPLS[impl](hr.astype(dtype) / 255, 1 / scale), 0, 1) * 255 + 0.5)
        assert out.shape == lr.shape
        diff = np.abs(out.astype(int) - lr.astype(int))
        equal, total, worst = equal + np.sum(diff == 0), total + diff.size, max(worst, diff.max())
    return equal / total, worst


# X2-X4 were made by MATLAB from the uint8 images (rounded after each axis), X8 from floats.
@needs("Set5", "Set5_LR_bicubic")
@pytest.mark.parametrize("impl", ["numpy", "tf"])
@pytest.mark.parametrize("scale, dtype", [(2, "uint8"), (3, "uint8"), (4, "uint8"), (8, "float32")])
def test_reproduces_matlab_lr_files(scale, dtype, impl):
    equal, worst = _match(scale, impl, dtype)
    assert equal >= 0.999 and worst <= 1, (equal, worst)


def test_numpy_and_tf_agree(rng):
    img = rng.random((37, 50, 3))
    for scale in (1 / 4, 1 / 3, 0.7, 1.5, 2, 3, (0.5, 1.25)):
        ref = imresize_np(img, scale)
        np.testing.assert_allclose(imresize(img, scale).numpy(), ref, atol=1e-12)  # float64
        np.testing.assert_allclose(imresize(img.astype(np.float32), scale).numpy(), ref, atol=2e-6)


def test_integer_images_match_too(rng):
    # Both round in float64, but sum the taps in different orders: an exact .5 may go either way.
    img = (rng.random((30, 41, 1)) * 255).astype(np.uint8)
    for scale in (0.5, 1 / 3, 2.5):
        out = imresize(img, scale).numpy()
        assert out.dtype == np.uint8
        diff = np.abs(out.astype(int) - imresize_np(img, scale))
        assert diff.max() <= 1 and np.mean(diff == 0) >= 0.999


def test_non_integer_scale_shape_and_linear_reproduction():
    # Keys' cubic reproduces linear functions, so away from the mirrored borders the output
    # samples the ramp at MATLAB's input coordinate u = x / s + (1 - 1 / s) / 2 (1-based).
    scale, n = 1.5, 40
    ramp = np.tile(np.arange(1, n + 1, dtype=np.float64)[None, :, None], (6, 1, 1))
    out = imresize_np(ramp, scale)
    assert out.shape == (math.ceil(6 * scale), math.ceil(n * scale), 1)
    x = np.arange(1, out.shape[1] + 1)
    u = x / scale + 0.5 * (1 - 1 / scale)
    inner = (u > 3) & (u < n - 2)
    np.testing.assert_allclose(out[0, inner, 0], u[inner], atol=1e-12)


def test_shrinking_keeps_constants_and_antialiases(rng):
    const = np.full((33, 21, 1), 0.25)
    np.testing.assert_allclose(imresize_np(const, 0.3), 0.25, atol=1e-14)
    stripes = np.tile(np.array([0.0, 1.0])[None, :, None], (18, 36, 1))  # Nyquist pattern
    assert np.ptp(imresize_np(stripes, 1 / 3)[2:-2, 2:-2]) < 0.02  # averaged away
    assert np.ptp(imresize_np(stripes, 1 / 3, antialias=False)[2:-2, 2:-2]) > 0.99  # aliased


def test_upscaling_and_output_shape():
    img = np.linspace(0, 1, 10 * 7 * 3).reshape(10, 7, 3).astype(np.float32)
    assert imresize(img, 2).shape == (20, 14, 3)
    assert imresize(img, 4).shape == (40, 28, 3)
    assert imresize(img, output_shape=(13, 5)).shape == (13, 5, 3)
    np.testing.assert_allclose(
        imresize(img, output_shape=(13, 5)).numpy(), imresize_np(img, output_shape=(13, 5)), atol=2e-6)
    with pytest.raises(ValueError, match="exactly one"):
        imresize_np(img, 2, output_shape=(4, 4))


def test_dynamic_shapes_in_a_graph(rng):
    fn = tf.function(lambda x: imresize(x, 1 / 3), input_signature=[tf.TensorSpec([None, None, 1])])
    for shape in ((30, 45, 1), (19, 8, 1)):
        img = rng.random(shape).astype(np.float32)
        np.testing.assert_allclose(fn(img).numpy(), imresize_np(img, 1 / 3), atol=2e-6)


def test_smaller_scale_axis_goes_first(rng):
    # Visible with integer images, which are rounded between the two passes.
    img = (rng.random((24, 24, 1)) * 255).astype(np.uint8)
    rows_first = imresize_np(imresize_np(img, (0.5, 1)), (1, 2))
    cols_first = imresize_np(imresize_np(img, (1, 2)), (0.5, 1))
    assert not np.array_equal(rows_first, cols_first)
    np.testing.assert_array_equal(imresize_np(img, (0.5, 2)), rows_first)
    np.testing.assert_array_equal(imresize(img, (0.5, 2)).numpy(), rows_first)


def test_modcrop_numpy_and_tensors():
    img = np.zeros((31, 17, 3))
    assert modcrop(img, 4).shape == (28, 16, 3)
    assert modcrop(img, 3).shape == (30, 15, 3)
    assert tuple(modcrop(tf.constant(img), 4).shape) == (28, 16, 3)
