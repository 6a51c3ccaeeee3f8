"""Inference: tiling, patch averaging, self-ensemble, colour handling, files, bad input."""


import numpy as np
import pytest
import keras
from PIL import Image

import zoo
from zoo.data.io import read_image, rgb_to_ycbcr, write_image
from zoo.checkpoint import load_model
from zoo.restore import (default_overlap, dihedral, exact_margin, predict, receptive_radius,
                         restore_files, restore_image)


def _perturbed(model, rng, scale=0.05):
    model.set_weights([w + rng.normal(0, scale, w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


@pytest.mark.parametrize("shape", [(100, 77), (61, 130)])
def test_tiled_equals_whole_when_the_receptive_field_fits(rng, shape):
    model = _perturbed(zoo.build("srcnn"), rng)
    assert receptive_radius(model) == 8  # 9x9, 5x5, 5x5 convs: 4 + 2 + 2
    image = rng.random(shape + (1,), dtype="float32")
    whole = predict(model, image)
    tiled = predict(model, image, tile=48, overlap=22)  # blending starts 3/8 * 22 = 8 px inside
    assert np.abs(tiled - whole).max() < 1e-5


def test_tiled_sub_pixel_model_equals_whole(rng):
    model = _perturbed(zoo.build("xsrresnet", blocks=1, filters=8, scale=2), rng)
    radius = receptive_radius(model)
    image = rng.random((70, 53, 3), dtype="float32")
    whole = predict(model, image)
    tiled = predict(model, image, tile=3 * radius + 8, overlap=3 * radius)
    assert whole.shape == (140, 106, 3)
    assert np.abs(tiled - whole).max() < 1e-5


def test_tiles_too_small_for_the_receptive_field_differ(rng):
    model = _perturbed(zoo.build("srcnn"), rng, 0.3)
    image = rng.random((90, 90, 1), dtype="float32")
    assert np.abs(predict(model, image, tile=24, overlap=4) - predict(model, image)).max() > 1e-4


def test_default_overlap_is_exact(rng):
    model = _perturbed(zoo.build("srcnn"), rng)
    overlap = default_overlap(model, 64)
    assert exact_margin(overlap) >= 8 and exact_margin(overlap - 1) < 8  # the smallest exact one
    image = rng.random((90, 70, 1), dtype="float32")
    assert np.abs(predict(model, image, tile=64) - predict(model, image)).max() < 1e-5
    with pytest.warns(UserWarning, match="too small for exact tiling"):
        assert default_overlap(model, 16) == 8


def test_patch_averaging_of_nlrn_style(rng):
    # A pointwise model is exact under any patching, so averaging must give it back.
    model = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(1, 1)])
    _perturbed(model, rng, 1.0)
    image = rng.random((50, 47, 1), dtype="float32")
    np.testing.assert_allclose(predict(model, image, patches=15, stride=7), predict(model, image),
                               atol=1e-5)


def _symmetric_model(rng):
    """Convs with kernels invariant under the 8 dihedral transforms: an equivariant model."""
    model = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(4, 3, padding="same"),
                              keras.layers.ReLU(), keras.layers.Conv2D(1, 3, padding="same")])
    for layer in (model.layers[0], model.layers[2]):
        kernel, bias = layer.get_weights()
        base = np.outer([1, 2, 1], [1, 2, 1])[..., None, None] / 16
        layer.set_weights([base * rng.normal(size=kernel.shape[2:]), rng.normal(size=bias.shape)])
    return model


def test_self_ensemble_of_an_equivariant_model_changes_nothing(rng):
    model = _symmetric_model(rng)
    image = rng.random((23, 31, 1), dtype="float32")
    np.testing.assert_allclose(predict(model, image, ensemble=True), predict(model, image), atol=1e-5)


def test_self_ensemble_is_the_mean_of_the_eight_transformed_runs(rng):
    model = _perturbed(zoo.build("xsrcnn_f"), rng, 0.1)
    image = rng.random((23, 31, 1), dtype="float32")
    runs = []
    for k in range(8):
        y = predict(model, np.ascontiguousarray(dihedral(image, k)))
        if k >= 4:
            y = y[:, ::-1]
        runs.append(np.rot90(y, -(k % 4), axes=(0, 1)))
    ensemble = predict(model, image, ensemble=True)
    np.testing.assert_allclose(ensemble, np.mean(runs, axis=0), atol=1e-6)
    assert np.abs(ensemble - predict(model, image)).max() > 1e-4  # not equivariant


def test_y_model_on_colour_keeps_chroma_for_denoising(rng):
    model = zoo.build("memnet", blocks=1, recursions=1, filters=8)
    conv = model.get_layer("reconstruction_conv")  # small, non-zero changes of Y
    conv.set_weights([rng.normal(0, 2e-3, w.shape).astype("float32") for w in conv.get_weights()])
    image = (0.25 + 0.5 * rng.random((20, 24, 3))).astype("float32")
    out = restore_image(model, image, zoo.info("memnet"), task="denoise")
    before, after = rgb_to_ycbcr(image.astype(np.float64)), rgb_to_ycbcr(out.astype(np.float64))
    inside = ((out > 0) & (out < 1)).all(-1)  # where the RGB result was not clipped
    assert inside.mean() > 0.9
    np.testing.assert_allclose(after[inside][:, 1:], before[inside][:, 1:], atol=1e-5)
    assert np.abs(after[..., 0] - before[..., 0]).max() > 1e-3


def test_gray_model_on_colour_needs_per_channel(rng):
    model = zoo.build("xnet", layers=1, filters=4)
    image = rng.random((16, 16, 3), dtype="float32")
    with pytest.raises(ValueError, match="per-channel"):
        restore_image(model, image, zoo.info("xnet"))
    out = restore_image(model, image, zoo.info("xnet"), per_channel=True)
    assert out.shape == image.shape


def test_nlrn_super_resolves_the_y_of_a_colour_image(rng):
    # NLRN restores gray (denoising) and Y (SR): a colour image is not refused
    model = zoo.build("nlrn", states=1, filters=8, embed_filters=4)
    out = restore_image(model, rng.random((8, 10, 3), dtype="float32"), zoo.info("nlrn"),
                        task="sr", scale=2)
    assert out.shape == (16, 20, 3)


def test_interpolated_sr_model_upscales_first(rng):
    model = zoo.build("srcnn")
    out = restore_image(model, rng.random((10, 12, 3), dtype="float32"), zoo.info("srcnn"),
                        task="sr", scale=3)
    assert out.shape == (30, 36, 3)


def test_sixteen_bit_stays_sixteen_bit(tmp_path, rng):
    image = (rng.random((24, 20, 1)) * 65535).astype(np.uint16)
    write_image(tmp_path / "in" / "deep.png", image, bit_depth=16)
    model = zoo.build("xnet", layers=1, filters=4)
    written = restore_files(model, zoo.info("xnet"), [tmp_path / "in"], tmp_path / "out")
    assert [p.name for p in written] == ["deep.png"]
    with Image.open(written[0]) as im:
        assert im.mode.startswith("I;16") or im.mode == "I"
    restored = read_image(written[0], dtype="uint16")
    assert restored.shape == (24, 20, 1)
    assert np.any(restored % 257 != 0)  # 16-bit values, not 8-bit ones scaled by 257


def test_restore_refuses_to_write_next_to_its_input(tmp_path, rng):
    write_image(tmp_path / "a.png", rng.random((16, 16, 1)))
    model = zoo.build("xnet", layers=1, filters=4)
    with pytest.raises(ValueError, match="holds the input"):
        restore_files(model, zoo.info("xnet"), [tmp_path / "a.png"], tmp_path)


@pytest.fixture
def folder(tmp_path, rng):
    (tmp_path / "in").mkdir()
    write_image(tmp_path / "in" / "gray.png", rng.random((20, 20, 1)))
    return tmp_path


@pytest.mark.parametrize("make,message", [
    (lambda p: [p / "in" / "missing.png"], "does not exist"),
    (lambda p: [(p / "empty").mkdir() or p / "empty"], "no image files"),
    (lambda p: [(p / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken") and p / "bad.png"],
     "cannot read image"),
])
def test_bad_inputs_are_one_line_errors(folder, make, message, capsys):
    from zoo import cli

    code = cli.main(["restore", "--model", "xnet", "--set", "layers=1",
                     *map(str, make(folder)), "--out", str(folder / "out")])
    stderr = capsys.readouterr().err
    assert code == 2, stderr[-500:]
    assert message in stderr and "Traceback" not in stderr


def test_weights_of_another_model_name_both(tmp_path):
    zoo.build("xnet", layers=1, filters=4).save_weights(tmp_path / "xnet.weights.h5")
    with pytest.raises(ValueError, match=r"xnet\.weights\.h5 does not fit model 'xdncnn'"):
        load_model("xdncnn", tmp_path / "xnet.weights.h5")
    zoo.build("xdncnn_rgb").save(tmp_path / "rgb.keras")
    with pytest.raises(ValueError, match=r"rgb\.keras' holds a 'xdncnn_rgb' model, not 'xdncnn'"):
        load_model("xdncnn", tmp_path / "rgb.keras")
    (tmp_path / "corrupt.weights.h5").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match=r"corrupt\.weights\.h5: not a valid HDF5"):
        load_model("xnet", tmp_path / "corrupt.weights.h5", layers=1, filters=4)


def test_wrong_channel_count_weights(tmp_path):
    zoo.build("xdncnn_rgb").save_weights(tmp_path / "rgb.weights.h5")
    with pytest.raises(ValueError, match=r"does not fit model 'xdncnn': .*\(model \(3, 3, 1, 64\), file"):
        load_model("xdncnn", tmp_path / "rgb.weights.h5")
