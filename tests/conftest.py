import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from zoo.data import demo_images, write_image


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Crops of the built-in demo photographs, small enough for quick training and validation
    (test modules may define their own ``folder``)."""
    path = tmp_path_factory.mktemp("images")
    for name, image in demo_images("gray")[:4]:
        write_image(path / f"{name}.png", image[100:164, 100:180])
    return path
