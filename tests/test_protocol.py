"""The protocol reproduces published baselines (MemNet, Tai et al. 2017, Tables 4, 5; SPEC §4).

Goes through ``zoo.evaluate.baseline``, the function behind ``zoo baseline``.
"""

import math

import pytest

from .data_paths import DATA, needs
from zoo.evaluate import baseline, markdown_table


@needs("Set5")
@pytest.mark.parametrize("scale, psnr, ssim",
                         [(2, 33.66, 0.9299), (3, 30.39, 0.8682), (4, 28.42, 0.8104)])
def test_bicubic_set5_matches_memnet_table4(scale, psnr, ssim):
    result = baseline("sr", scale, DATA / "Set5")
    assert sorted(result["images"]) == ["baby", "bird", "butterfly", "head", "woman"]
    assert result["mean"]["psnr"] == pytest.approx(psnr, abs=0.01)
    assert result["mean"]["ssim"] == pytest.approx(ssim, abs=0.0005)


@needs("Classic5")
@pytest.mark.parametrize("quality, psnr, ssim", [(10, 27.82, 0.7595), (20, 30.12, 0.8344)])
def test_jpeg_classic5_matches_memnet_table5(quality, psnr, ssim):
    result = baseline("jpeg", quality, DATA / "Classic5")
    assert len(result["images"]) == 5
    assert result["mean"]["psnr"] == pytest.approx(psnr, abs=0.01)
    assert result["mean"]["ssim"] == pytest.approx(ssim, abs=0.0005)


@needs("Set12", "Classic5")
def test_noise_baseline_is_seeded_per_image_and_has_the_expected_psnr():
    first = baseline("denoise", 25, DATA / "Set12")
    combined = baseline("denoise", 25, [DATA / "Classic5", DATA / "Set12"])
    other_seed = baseline("denoise", 25, DATA / "Set12", seed=1)
    assert len(combined["images"]) == len(first["images"]) + 5
    for name, metrics in first["images"].items():  # same noise whatever else is evaluated
        assert combined["images"][name] == metrics
        assert other_seed["images"][name]["psnr"] != metrics["psnr"]
    # Unclipped Gaussian noise: MSE = sigma^2 on average, PSNR = 20 log10(255 / sigma).
    assert first["mean"]["psnr"] == pytest.approx(20 * math.log10(255 / 25), abs=0.05)


@needs("Set5")
def test_markdown_table_lists_every_image_and_the_mean():
    result = baseline("sr", 4, DATA / "Set5")
    table = markdown_table(result).splitlines()
    assert len(table) == 2 + len(result["images"]) + 1
    assert f"{result['images']['bird']['psnr']:.2f}" in next(r for r in table if r.startswith("| bird "))
    assert f"{result['mean']['ssim']:.4f}" in table[-1]
