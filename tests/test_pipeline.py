"""tf.data training pipelines and test pairs (SPEC §4; MemNet §4.1, xUnit §4, NLRN code)."""

import numpy as np
import pytest
import tensorflow as tf

from zoo.data.pipeline import _dihedral, training_dataset


def _take(dataset, n=1):
    return [tuple(np.asarray(t) for t in batch) for batch in dataset.take(n)]


@pytest.mark.parametrize("patches,size,stride", [("random", 40, None), ("grid", 31, 21)])
def test_patch_shapes_and_ranges(images, patches, size, stride):
    ds = training_dataset(images, task="denoise", levels=[25], patch_size=size, batch_size=8,
                          patches=patches, stride=stride)
    (x, y), = _take(ds)
    assert x.shape == y.shape == (8, size, size, 1) and x.dtype == np.float32
    assert 0.0 <= y.min() and y.max() <= 1.0
    assert x.min() < 0.0 or x.max() > 1.0  # noise is not clipped


def test_noise_sigma_per_sample_is_one_of_the_levels(images):
    levels = [10, 30, 60]
    ds = training_dataset(images, task="denoise", levels=levels, patch_size=40, batch_size=32,
                          augment=False)
    (x, y), = _take(ds)
    sigmas = (x - y).reshape(32, -1).std(axis=1) * 255
    nearest = np.array(levels)[np.abs(sigmas[:, None] - levels).argmin(1)]
    np.testing.assert_allclose(sigmas, nearest, rtol=0.1)  # 1600 samples: std error ~2%
    assert len(set(nearest)) > 1  # drawn per sample, not per batch


def test_noise_sigma_from_a_range(images):
    ds = training_dataset(images, task="denoise", levels=[0], level_range=(5, 55), patch_size=40,
                          batch_size=32, augment=False)
    (x, y), = _take(ds)
    sigmas = (x - y).reshape(32, -1).std(axis=1) * 255
    assert sigmas.min() > 4 and sigmas.max() < 58 and sigmas.std() > 5


def test_dihedral_transforms_are_the_eight_distinct_ones():
    x = tf.reshape(tf.range(9.0), (3, 3, 1))
    outs = {tuple(np.asarray(_dihedral(x, tf.constant(k))).ravel()) for k in range(8)}
    assert len(outs) == 8


def test_augmentation_applies_the_same_transform_to_input_and_target(images):
    # JPEG is deterministic, so target and input must stay aligned patch for patch.
    ds = training_dataset(images, task="jpeg", levels=[90], patch_size=32, batch_size=16)
    (x, y), = _take(ds)
    assert np.abs(x - y).mean() < 0.02  # aligned: only the small JPEG error remains
    shifted = np.abs(x - np.rot90(y, 1, axes=(1, 2))).mean()
    assert shifted > 5 * np.abs(x - y).mean()


def test_deterministic_given_a_seed(images):
    make = lambda seed: training_dataset(images, task="denoise", levels=[15, 50], patch_size=24,
                                         batch_size=4, seed=seed)
    a, b, c = _take(make(3), 3), _take(make(3), 3), _take(make(4), 3)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a[0][0], c[0][0])


def test_sr_interpolated_pairs_are_bicubic_down_and_up(images):
    ds = training_dataset(images, task="sr", levels=[2, 3], patch_size=24, batch_size=8,
                          augment=False, patches="grid", stride=24)
    (x, y), = _take(ds)
    assert x.shape == y.shape == (8, 24, 24, 1)
    assert 0 < np.abs(x - y).mean() < 0.2


def test_sub_pixel_pairs_are_aligned(images):
    ds = training_dataset(images, task="sr", levels=[4], patch_size=32, batch_size=8,
                          upsampling="sub-pixel", augment=True)
    (x, y), = _take(ds)
    assert x.shape == (8, 8, 8, 1) and y.shape == (8, 32, 32, 1)
    # The low-res patch is closer to the box-average of its own high-res patch
    # than to that patch shifted by one low-res pixel.
    pooled = y.reshape(8, 8, 4, 8, 4, 1).mean(axis=(2, 4))
    aligned = np.abs(x - pooled)[:, 1:-1, 1:-1].mean()
    shifted = np.abs(x - np.roll(pooled, 1, axis=1))[:, 1:-1, 1:-1].mean()
    assert aligned < 0.5 * shifted


@pytest.mark.parametrize("kwargs,match", [
    (dict(task="blur", levels=[1]), "task must be one of"),
    (dict(task="sr", levels=[1.5]), "integer >= 2"),
    (dict(task="jpeg", levels=[0]), "1..100"),
    (dict(task="sr", levels=[2, 4], upsampling="sub-pixel"), "one scale"),
    (dict(task="denoise", levels=[25], patches="tiles"), "patches must be"),
])
def test_bad_arguments(images, kwargs, match):
    with pytest.raises(ValueError, match=match):
        training_dataset(images, patch_size=24, batch_size=2, **kwargs)


def test_images_smaller_than_the_patch_are_refused(images):
    with pytest.raises(ValueError, match="smaller than the patch size 70"):
        training_dataset(images, task="denoise", levels=[25], patch_size=70, batch_size=2)


def test_folder_with_small_and_corrupt_images_warns_and_counts(tmp_path):
    from PIL import Image
    for i in range(2):
        Image.fromarray(np.full((50, 50), 100 + i, np.uint8)).save(tmp_path / f"ok{i}.png")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "small.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.warns(UserWarning) as record:
        ds = training_dataset(tmp_path, task="denoise", levels=[25], patch_size=32, batch_size=2)
    text = " ".join(str(w.message) for w in record)
    assert "small.png" in text and "broken.png" in text
    (x, _), = _take(ds)
    assert x.shape == (2, 32, 32, 1)
