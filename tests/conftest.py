import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from zoo.data import demo_images, write_image


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def images():
    """Blocky random gray images of three sizes, as ``(name, array)``."""
    rng = np.random.default_rng(1)
    out = []
    for i, (h, w) in enumerate([(60, 50), (48, 64), (72, 72)]):
        base = rng.random((h // 4 + 1, w // 4 + 1, 1))
        out.append((f"img{i}", np.kron(base, np.ones((4, 4, 1)))[:h, :w].astype("float32")))
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Crops of the built-in demo photographs, small enough for quick training and validation
    (test modules may define their own ``folder``)."""
    path = tmp_path_factory.mktemp("images")
    for name, image in demo_images("gray")[:4]:
        write_image(path / f"{name}.png", image[100:164, 100:180])
    return path
