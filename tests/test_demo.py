"""The built-in demo set (scikit-image photographs, no download)."""

import numpy as np
import pytest

from zoo.data.demo import demo_folder, demo_images
from zoo.data.io import list_images, read_image


@pytest.mark.parametrize("mode, channels, count", [("gray", 1, 8), ("Y", 1, 8), ("RGB", 3, 5)])
def test_demo_images(mode, channels, count):
    images = demo_images(mode)
    assert len(images) == count
    for name, img in images:
        assert img.dtype == np.float32 and img.shape[-1] == channels and min(img.shape[:2]) >= 256
        assert 0 <= img.min() and img.max() <= 1 and img.std() > 0.05, name


def test_demo_folder_is_written_once(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path))
    folder = demo_folder("Y")
    assert folder.is_relative_to(tmp_path)
    files = list_images(folder)
    stamps = [f.stat().st_mtime_ns for f in files]
    for (name, img), path in zip(demo_images("Y"), files):
        assert path.stem == name
        np.testing.assert_array_equal(read_image(path), img)
    assert demo_folder("Y") == folder
    assert [f.stat().st_mtime_ns for f in list_images(folder)] == stamps


def test_demo_split_holds_validation_images_out():
    from zoo.data.demo import DEMO_VALIDATION
    for mode in ("gray", "RGB"):
        train = {name for name, _ in demo_images(mode, split="train")}
        val = {name for name, _ in demo_images(mode, split="val")}
        assert val and train and not train & val
        assert val <= set(DEMO_VALIDATION)
        assert train | val == {name for name, _ in demo_images(mode)}
