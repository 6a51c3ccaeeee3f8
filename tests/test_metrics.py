"""PSNR / SSIM (SPEC §4): hand computations, scikit-image, the protocol helper, Keras metrics."""

import math

import keras
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from zoo.data.demo import demo_images
from zoo.metrics import PSNRMetric, SSIMMetric, batch_psnr, protocol_metrics, psnr, ssim


@pytest.fixture(scope="module")
def pair():
    clean = dict(demo_images("gray"))["camera"][100:228, 150:310].astype(np.float64)
    noisy = clean + 0.08 * np.random.default_rng(1).standard_normal(clean.shape)
    return clean, noisy


def test_psnr_hand_computed():
    a = np.zeros((4, 5, 1))
    assert psnr(a + 0.1, a) == pytest.approx(20.0)  # 10 log10(1 / 0.01)
    u8 = np.full((4, 4, 1), 100, np.uint8)
    other = u8.copy()
    other[0, 0] = 120  # MSE = 400 / 16 = 25
    assert psnr(other, u8) == pytest.approx(10 * math.log10(255**2 / 25))
    assert psnr(other, u8, shave=1) == math.inf  # the only error sits on the border
    assert psnr(other.astype(float), u8.astype(float), data_range=255) == pytest.approx(psnr(other, u8))
    with pytest.raises(ValueError, match="data_range"):
        psnr(other, u8 / 255)


def test_ssim_of_identical_images_is_one(pair):
    assert ssim(pair[0], pair[0]) == pytest.approx(1.0, abs=1e-12)
    assert ssim(pair[1], pair[0]) < 0.9


@pytest.mark.parametrize("shave", [0, 3])
def test_ssim_equals_skimage(pair, shave):
    clean, noisy = (x * 255 for x in pair)
    ours = ssim(noisy, clean, shave=shave, data_range=255)
    s = slice(shave, -shave or None)
    ref = structural_similarity(noisy[s, s, 0], clean[s, s, 0], gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, data_range=255)
    assert ours == pytest.approx(ref, abs=1e-9)


def test_ssim_averages_channels_and_is_scale_free(pair):
    clean, noisy = (np.concatenate([x, x[::-1]], axis=-1) for x in pair)
    ref = structural_similarity(noisy, clean, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, data_range=1.0, channel_axis=-1)
    assert ssim(noisy, clean) == pytest.approx(ref, abs=1e-9)
    assert ssim(noisy * 255, clean * 255, data_range=255) == pytest.approx(ref, abs=1e-9)


def test_protocol_sr_rounds_to_uint8_takes_y_and_shaves(rng):
    clean = (rng.random((24, 24, 3)) * 255).astype(np.uint8)
    restored = clean / 255 + 0.4 / 255  # rounds back to the clean image
    assert protocol_metrics(restored, clean, "sr", 2)["psnr"] == math.inf
    denoise = protocol_metrics(restored, clean, "denoise", 25)  # float, not rounded
    assert denoise["psnr"] == pytest.approx(20 * math.log10(255 / 0.4))
    border = clean.copy()
    border[:3] = 255 - border[:3]
    assert protocol_metrics(border, clean, "sr", 3)["psnr"] == math.inf
    assert protocol_metrics(border, clean, "sr", 2)["psnr"] < 40
    y = lambda img: 16 + img @ np.array([65.481, 128.553, 24.966]) / 255  # noqa: E731
    noisy = np.clip(clean / 255 + 0.05 * rng.standard_normal(clean.shape), 0, 1)
    y_clean, y_noisy = (np.floor(y(np.floor(x * 255 + 0.5)) + 0.5) for x in (clean / 255, noisy))
    expected = 10 * math.log10(255**2 / np.mean((y_clean[2:-2, 2:-2] - y_noisy[2:-2, 2:-2]) ** 2))
    assert protocol_metrics(noisy, clean, "sr", 2)["psnr"] == pytest.approx(expected, abs=1e-9)


def test_protocol_rejects_unknown_tasks(pair):
    with pytest.raises(ValueError, match="task"):
        protocol_metrics(pair[1], pair[0], "deblur", 1)


def test_keras_metrics_equal_numpy_on_a_batch(pair, rng):
    clean = np.stack([pair[0], pair[0][::-1], pair[0][:, ::-1]]).astype(np.float32)
    sigmas = rng.uniform(0.02, 0.1, (3, 1, 1, 1))
    noisy = (clean + sigmas * rng.standard_normal(clean.shape)).astype(np.float32)
    psnrs = [psnr(n, c, shave=4) for n, c in zip(noisy, clean)]
    ssims = [ssim(n, c, shave=4) for n, c in zip(noisy, clean)]
    p_metric, s_metric = PSNRMetric(shave=4), SSIMMetric(shave=4)
    for metric in (p_metric, s_metric):  # two updates: the mean runs over all images
        metric.update_state(clean[:1], noisy[:1])
        metric.update_state(clean[1:], noisy[1:])
    assert float(p_metric.result()) == pytest.approx(np.mean(psnrs), abs=1e-3)
    assert float(s_metric.result()) == pytest.approx(np.mean(ssims), abs=1e-5)
    per_image = keras.ops.convert_to_numpy(batch_psnr(clean, noisy, shave=4))
    np.testing.assert_allclose(per_image, psnrs, atol=1e-3)
    p_metric.reset_state()
    assert float(p_metric.result()) == 0
    clone = SSIMMetric.from_config(s_metric.get_config())
    assert (clone.name, clone.shave, clone.data_range) == ("ssim", 4, 1.0)


def test_keras_psnr_in_fit():
    x = np.random.default_rng(0).random((4, 16, 16, 1)).astype(np.float32)
    model = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Identity()])
    model.compile(loss="mse", metrics=[PSNRMetric(), SSIMMetric()])
    logs = model.evaluate(x, np.clip(x + 0.1, 0, 1), verbose=0, return_dict=True)
    expected = np.mean([psnr(a, np.clip(a + 0.1, 0, 1)) for a in x])
    assert logs["psnr"] == pytest.approx(expected, abs=1e-3)
    assert 0 < logs["ssim"] < 1
