"""Image files and MATLAB colour conventions (zoo.data.io)."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tifffile
from PIL import Image

from zoo.data import io as zio
from zoo.data.io import (
    ImageReadError, list_images, quantize, read_folder, read_image, rgb_to_gray, rgb_to_y,
    rgb_to_ycbcr, tf_rgb_to_y, write_image, ycbcr_to_rgb,
)


@pytest.fixture
def u8(rng):
    return (rng.random((13, 17, 3)) * 256).astype(np.uint8)


@pytest.fixture
def u16(rng):
    return (rng.random((13, 17, 3)) * 65536).astype(np.uint16)


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif"])
@pytest.mark.parametrize("channels", [1, 3])
def test_8bit_round_trip(tmp_path, u8, ext, channels):
    img = u8[..., :channels]
    path = write_image(tmp_path / f"a{ext}", img)
    np.testing.assert_array_equal(read_image(path, dtype="uint8"), img)
    np.testing.assert_allclose(read_image(path), img / 255, atol=1e-7)
    assert read_image(path).dtype == np.float32


@pytest.mark.parametrize("ext", [".png", ".tif"])
@pytest.mark.parametrize("channels", [1, 3])
def test_16bit_round_trip(tmp_path, u16, ext, channels):
    img = u16[..., :channels]
    path = write_image(tmp_path / f"a{ext}", img, bit_depth=16)
    np.testing.assert_array_equal(read_image(path, dtype="uint16"), img)
    np.testing.assert_allclose(read_image(path, dtype="float64"), img / 65535, atol=1e-15)
    # MATLAB im2uint8 of uint16: round(x / 257).
    np.testing.assert_array_equal(read_image(path, dtype="uint8"), np.floor(img / 257 + 0.5))


def test_float_written_at_16_bits_keeps_the_precision(tmp_path, rng):
    img = rng.random((8, 9, 3))
    back = read_image(write_image(tmp_path / "f.png", img, bit_depth=16), dtype="float64")
    assert np.abs(back - img).max() <= 0.5 / 65535 + 1e-12


def test_16bit_files_from_other_writers(tmp_path, u16):
    tf.io.write_file(str(tmp_path / "rgba.png"), tf.io.encode_png(np.dstack([u16, u16[..., :1]])))
    planar = np.moveaxis(u16, -1, 0)
    tifffile.imwrite(tmp_path / "planar.tif", planar, photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png", dtype="uint16"), u16)
    np.testing.assert_array_equal(read_image(tmp_path / "planar.tif", dtype="uint16"), u16)


def test_alpha_dropped_and_palette_expanded(tmp_path, u8):
    Image.fromarray(np.dstack([u8, u8[..., :1]]), "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(np.dstack([u8[..., 0], u8[..., 1]]), "LA").save(tmp_path / "la.png")
    palette = np.array([[255, 0, 0], [0, 128, 255], [7, 7, 7]], np.uint8)
    index = u8[..., 0] % 3
    p = Image.fromarray(index, "P")
    p.putpalette(palette.ravel().tolist())
    p.save(tmp_path / "p.png", transparency=0)
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png", dtype="uint8"), u8)
    np.testing.assert_array_equal(read_image(tmp_path / "la.png", dtype="uint8"), u8[..., :1])
    np.testing.assert_array_equal(read_image(tmp_path / "p.png", dtype="uint8"), palette[index])


def test_jpeg_read_matches_pillow(tmp_path, u8):
    Image.fromarray(u8).save(tmp_path / "a.jpg", quality=90)
    Image.fromarray(u8[..., 0]).save(tmp_path / "g.jpeg", quality=90)
    np.testing.assert_array_equal(read_image(tmp_path / "a.jpg", dtype="uint8"),
                                  np.asarray(Image.open(tmp_path / "a.jpg")))
    assert read_image(tmp_path / "g.jpeg").shape == (13, 17, 1)


def test_modes(tmp_path, u8):
    path = write_image(tmp_path / "c.png", u8)
    np.testing.assert_array_equal(read_image(path, "Y", "uint8"), rgb_to_y(u8))
    np.testing.assert_array_equal(read_image(path, "gray", "uint8"), rgb_to_gray(u8))
    np.testing.assert_allclose(read_image(path, "Y", "float64"), rgb_to_y(u8 / 255), atol=1e-15)
    gray = write_image(tmp_path / "g.png", u8[..., :1])
    np.testing.assert_array_equal(read_image(gray, "Y", "uint8"), u8[..., :1])  # gray stays gray
    np.testing.assert_array_equal(read_image(gray, "RGB", "uint8"), np.repeat(u8[..., :1], 3, -1))
    with pytest.raises(ValueError, match="mode"):
        read_image(path, "YUV")


def _bad_files(folder):
    good = write_image(folder / "good.png", np.zeros((20, 20, 1)))
    data = good.read_bytes()
    (folder / "empty.png").write_bytes(b"")
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    (folder / "garbage.png").write_bytes(os.urandom(200))
    return ["empty.png", "truncated.png", "garbage.png"]


@pytest.mark.parametrize("name, reason", [
    ("missing.png", "no such file"), ("empty.png", "empty"),
    ("truncated.png", "truncated"), ("garbage.png", "not a recognised"),
])
def test_read_errors_name_the_file(tmp_path, name, reason):
    _bad_files(tmp_path)
    with pytest.raises(ImageReadError, match=reason) as err:
        read_image(tmp_path / name)
    assert isinstance(err.value, ValueError)
    assert str(tmp_path / name) in str(err.value)


def test_read_folder_skips_with_a_warning(tmp_path):
    bad = _bad_files(tmp_path)
    write_image(tmp_path / "small.png", np.zeros((5, 30, 1)))
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning) as record:
        images = read_folder(tmp_path, min_size=10)
    assert [name for name, _ in images] == ["good"]
    messages = [str(w.message) for w in record]
    unreadable = next(m for m in messages if "could not be read" in m)
    assert "3 image(s)" in unreadable and all(b in unreadable for b in bad)
    assert any("1 image(s)" in m and "small.png" in m for m in messages)


def test_list_images_sorts_filters_and_fails_clearly(tmp_path):
    for name in ("b.PNG", "a.jpg", "c.tiff", "d.txt", ".hidden.png"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.tiff"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image files"):
        list_images(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_images(tmp_path / "nowhere")


def test_list_images_min_size(tmp_path):
    write_image(tmp_path / "big.png", np.zeros((12, 40, 1)))
    write_image(tmp_path / "small.png", np.zeros((40, 9, 1)))
    with pytest.warns(UserWarning, match="small.png"):
        assert [p.name for p in list_images(tmp_path, min_size=10)] == ["big.png"]


def test_write_is_atomic(tmp_path, monkeypatch):
    target = write_image(tmp_path / "a.png", np.zeros((4, 4, 1)))
    before = target.read_bytes()

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(zio.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_image(target, np.ones((4, 4, 1)))
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["a.png"]  # no temporary file left behind
    with pytest.raises(ValueError, match="16-bit"):
        write_image(tmp_path / "b.jpg", np.zeros((4, 4, 1)), bit_depth=16)


def test_y_of_white_black_and_primaries():
    # MATLAB rgb2ycbcr: Y = 16 + 65.481 R + 128.553 G + 24.966 B on [0, 1] inputs.
    white, black = np.ones((1, 1, 3)), np.zeros((1, 1, 3))
    assert rgb_to_y(white)[0, 0, 0] * 255 == pytest.approx(235)
    assert rgb_to_y(black)[0, 0, 0] * 255 == pytest.approx(16)
    colours = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
    expected = np.floor(16 + np.array([219.0, 0.0, 65.481, 128.553, 24.966]) + 0.5)
    np.testing.assert_array_equal(rgb_to_y(colours)[0, :, 0], expected)  # uint8 in, rounded uint8 out
    assert rgb_to_y(colours).dtype == np.uint8
    blue = rgb_to_ycbcr(np.array([[[0.0, 0.0, 1.0]]]))[0, 0] * 255
    np.testing.assert_allclose(blue, [16 + 24.966, 128 + 112, 128 - 18.214])


def test_ycbcr_round_trip_and_tf_y(u8, rng):
    rgb = rng.random((6, 7, 3))
    np.testing.assert_allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-12)
    assert np.abs(ycbcr_to_rgb(rgb_to_ycbcr(u8)).astype(int) - u8).max() <= 2  # two roundings
    np.testing.assert_allclose(tf_rgb_to_y(tf.constant(rgb)).numpy(), rgb_to_y(rgb), atol=1e-15)
    np.testing.assert_array_equal(tf_rgb_to_y(tf.constant(u8)).numpy(), rgb_to_y(u8))


def test_quantize_rounds_half_away_from_zero_and_saturates():
    x = np.array([-0.1, 0.5 / 255, 1.5 / 255, 2.5 / 255, 1.2])
    np.testing.assert_array_equal(quantize(x), [0, 1, 2, 3, 255])
    np.testing.assert_array_equal(quantize(tf.constant(x)).numpy(), [0, 1, 2, 3, 255])
