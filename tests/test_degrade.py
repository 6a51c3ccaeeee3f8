"""Degradations (SPEC §4): noise, bicubic and JPEG, numpy reference vs TF in-graph versions."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from zoo.data.degrade import (
    add_noise, bicubic_degrade, image_seed, jpeg_degrade, tf_add_noise,
    tf_bicubic_degrade, tf_jpeg_degrade, tf_pick_level, tf_uniform_level,
)
from zoo.data.demo import demo_images
from zoo.data.tasks import degrade


@pytest.fixture(scope="module")
def camera():
    return dict(demo_images("gray"))["camera"][:192, :240]  # a multiple of 2, 3 and 4


def test_noise_level_determinism_and_no_clipping(camera):
    noisy = add_noise(camera, 25, seed=image_seed("camera"))
    residual = (noisy - camera) * 255
    assert residual.std() == pytest.approx(25, rel=0.01)
    assert abs(residual.mean()) < 0.2
    assert noisy.dtype == camera.dtype
    assert noisy.min() < 0 and noisy.max() > 1  # not clipped
    np.testing.assert_array_equal(add_noise(camera, 25, seed=image_seed("camera")), noisy)
    assert not np.array_equal(add_noise(camera, 25, seed=image_seed("camera", 1)), noisy)
    assert image_seed("camera") != image_seed("coins")


def test_tf_noise_per_sample_sigma_from_a_set():
    sigmas = [15.0, 25.0, 50.0]
    clean = tf.fill([40, 40, 1], 0.5)
    ds = tf.data.Dataset.range(60).map(lambda i: tf_add_noise(clean, sigmas, seed=tf.stack([i, 7])))
    stds = [float(tf.math.reduce_std(x - clean)) * 255 for x in ds]
    nearest = [min(sigmas, key=lambda s: abs(s - std)) for std in stds]
    assert all(abs(std / s - 1) < 0.08 for std, s in zip(stds, nearest))  # 1600 px: ~2 % std error
    assert set(nearest) == set(sigmas)
    again = [float(tf.math.reduce_std(x - clean)) * 255 for x in ds]
    assert again == stds  # stateless seeds: the same per element, every epoch


def test_tf_noise_tensor_sigma_and_range():
    sigma = tf_uniform_level(5, 55, seed=(3, 4))
    assert 5 <= float(sigma) < 55
    noisy = tf_add_noise(tf.zeros([64, 64, 1]), sigma, seed=(1, 2))
    assert float(tf.math.reduce_std(noisy)) * 255 == pytest.approx(float(sigma), rel=0.05)
    assert float(tf.reduce_min(noisy)) < 0  # not clipped
    np.testing.assert_array_equal(noisy, tf_add_noise(tf.zeros([64, 64, 1]), sigma, seed=(1, 2)))
    assert not np.array_equal(noisy, tf_add_noise(tf.zeros([64, 64, 1]), sigma, seed=(1, 3)))


def test_pick_level_draws_every_level_and_only_those():
    picks = {int(tf_pick_level([10, 20, 30], seed=(i, 0))) for i in range(50)}
    assert picks == {10, 20, 30}


@pytest.mark.parametrize("quality", [10, 20, 75])
def test_jpeg_in_graph_equals_pillow(camera, quality):
    ref = jpeg_degrade(camera, quality)
    np.testing.assert_array_equal(tf_jpeg_degrade(camera, quality).numpy(), ref)
    in_graph = tf_jpeg_degrade(tf.constant(camera), tf.constant(quality))  # tensor quality
    np.testing.assert_array_equal(in_graph.numpy(), ref)


def test_jpeg_is_libjpeg_on_the_uint8_image(tmp_path, camera):
    u8 = np.floor(camera * 255 + 0.5).astype(np.uint8)
    Image.fromarray(u8[..., 0]).save(tmp_path / "q.jpg", quality=10)
    decoded = np.asarray(Image.open(tmp_path / "q.jpg"))[..., None]
    np.testing.assert_array_equal(jpeg_degrade(u8, 10), decoded)
    assert np.abs(decoded.astype(int) - u8).mean() > 1  # the degradation is real


def test_jpeg_quality_drawn_per_sample(camera):
    refs = {q: jpeg_degrade(camera, q) for q in (10, 40)}
    ds = tf.data.Dataset.range(12).map(
        lambda i: tf_jpeg_degrade(camera, [10, 40], seed=tf.stack([i, 0])))
    hits = [next(q for q, ref in refs.items() if np.array_equal(out, ref))
            for out in ds.as_numpy_iterator()]
    assert set(hits) == {10, 40}


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_tf_bicubic_matches_numpy(camera, scale):
    for upsample in (True, False):
        ref = bicubic_degrade(camera, scale, upsample)
        out = tf_bicubic_degrade(camera, scale, upsample).numpy()
        assert out.shape == ref.shape
        np.testing.assert_allclose(out, ref, atol=5e-6)


def test_bicubic_scale_drawn_per_sample(camera):
    shapes = {tuple(x.shape) for x in tf.data.Dataset.range(20).map(
        lambda i: tf_bicubic_degrade(camera, [2, 3, 4], upsample=False, seed=tf.stack([i, 1])))}
    assert shapes == {(96, 120, 1), (64, 80, 1), (48, 60, 1)}


def test_bicubic_needs_a_multiple_of_the_scale(camera):
    with pytest.raises(ValueError, match="modcrop"):
        bicubic_degrade(camera[:191], 2)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf_bicubic_degrade(camera[:191], 2)


def test_degrade_dispatch(camera):
    np.testing.assert_array_equal(degrade(camera, "denoise", 15, seed=1), add_noise(camera, 15, seed=1))
    np.testing.assert_array_equal(degrade(camera, "sr", 3), bicubic_degrade(camera, 3))
    np.testing.assert_array_equal(degrade(camera, "jpeg", 30), jpeg_degrade(camera, 30))
    with pytest.raises(ValueError, match="task"):
        degrade(camera, "deblur", 1)
