"""The protocol (SPEC §4, ``zoo.protocol``): published baselines (MemNet, Tai et al. 2017,
Tables 4, 5) through ``zoo.evaluate.baseline`` (behind ``zoo baseline``), and its test pairs.
"""

import math

import numpy as np
import pytest

from .data_paths import DATA, needs
from zoo.data.degrade import bicubic_degrade
from zoo.evaluate import baseline, markdown_table
from zoo.protocol import evaluation_pairs


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


def test_evaluation_pairs_fix_the_noise_per_image(images):
    a = evaluation_pairs(images, "denoise", 25)
    b = evaluation_pairs(list(reversed(images)), "denoise", 25)
    by_name = {name: degraded for name, degraded, _ in b}
    for name, degraded, clean in a:
        np.testing.assert_array_equal(degraded, by_name[name])  # same noise whatever the order
        assert abs((degraded - clean).std() * 255 - 25) < 2


def test_evaluation_pairs_sr_modcrop_and_bicubic(images):
    for name, degraded, clean in evaluation_pairs(images, "sr", 3):
        assert clean.shape[0] % 3 == 0 and clean.shape[1] % 3 == 0
        np.testing.assert_allclose(degraded, bicubic_degrade(clean.astype(np.float64), 3), atol=1e-6)


def test_training_evaluate_and_export_print_one_number(tmp_path, capsys):
    """SPEC §4 through three paths: run.json's validation, ``zoo evaluate`` of last.keras and an
    export card's Keras column score the same model on the same colour images alike."""
    import json

    from zoo.cli import main
    from zoo.data.demo import demo_images
    from zoo.data.io import write_image
    from zoo.export import export
    from zoo.train import TrainConfig, train

    data = tmp_path / "images"
    data.mkdir()
    for name, image in demo_images("RGB")[:3]:
        write_image(data / f"{name}.png", image[90:165, 100:187])  # 75x87: modcrop trims it
    train(TrainConfig(model="srcnn", task="sr", levels=[3], train=[str(data)],
                      val=[str(data)], recipe_overrides={"steps": 6, "steps_per_epoch": 6,
                                                         "patch_size": 33, "batch_size": 4},
                      out=str(tmp_path / "run")))
    last = tmp_path / "run" / "last.keras"
    capsys.readouterr()
    assert main(["evaluate", "--model", "srcnn", "--weights", str(last), "--task", "sr",
                 "--level", "3", "--data", str(data), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)["results"][0]["mean"]
    card = export("srcnn", tmp_path / "srcnn.tflite", weights=str(last), task="sr", level=3,
                  val_data=[str(data)], latency_sizes=())
    trained = json.loads((tmp_path / "run" / "run.json").read_text())["val_psnr"]
    assert evaluated["psnr"] == pytest.approx(trained, abs=0.005)
    assert card["numerics"]["keras"]["psnr"] == pytest.approx(trained, abs=0.005)
    assert evaluated["input_psnr"] == pytest.approx(card["numerics"]["degraded"]["psnr"], abs=1e-4)
