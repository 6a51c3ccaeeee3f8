"""The task registry (zoo.data.tasks) and the degradation added through it: Gaussian noise on
colour images with one sigma per channel (``denoise_rgb``)."""

import json

import numpy as np
import pytest

import zoo
from zoo.cli import main
from zoo.data import demo_images, write_image
from zoo.data.degrade import add_noise, tf_add_noise
from zoo.data.pipeline import NumpyPatches, training_dataset
from zoo.data.tasks import TASKS, check_levels, degrade, get_task, parse_level
from zoo.protocol import evaluation_pairs, input_mode, score

SIGMAS = (5, 25, 50)


@pytest.fixture(scope="module")
def colour():
    """Three colour crops of the built-in photographs."""
    return [(name, image[60:156, 80:176]) for name, image in demo_images("RGB")[:3]]


def _channel_sigmas(noisy, clean):
    return (np.asarray(noisy, np.float64) - clean).reshape(-1, 3).std(axis=0) * 255


def test_every_task_is_complete_and_the_cli_offers_them_all():
    for name, task in TASKS.items():
        assert task.name == name and task.mode in ("gray", "Y", "RGB")
        assert check_levels(name, task.default_level) == [task.default_level]
        assert task.per_patch == (task.tf_degrade is not None)
    parser_help = zoo.cli.build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert all(name in parser_help for name in TASKS)


def test_levels_parse_and_clear_errors():
    assert parse_level("denoise_rgb", "10/25/40") == (10, 25, 40)
    assert parse_level("denoise_rgb", "25") == (25, 25, 25)
    assert parse_level("sr", "3") == 3 and isinstance(parse_level("sr", "3"), int)
    assert check_levels("denoise_rgb", [[10, 25, 40]]) == [(10, 25, 40)]  # read back from JSON
    with pytest.raises(ValueError, match="three sigmas"):
        check_levels("denoise_rgb", [(10, 25)])
    with pytest.raises(ValueError, match="one sigma"):
        check_levels("denoise", [(10, 25, 40)])
    with pytest.raises(ValueError, match="task must be one of denoise, sr, jpeg, denoise_rgb"):
        get_task("deblur")


def test_per_channel_noise_has_each_channel_sigma_and_is_seeded(colour):
    _, image = colour[0]
    noisy = degrade(image.astype(np.float64), "denoise_rgb", SIGMAS, seed=(0, 7))
    np.testing.assert_allclose(_channel_sigmas(noisy, image), SIGMAS, rtol=0.03)
    np.testing.assert_array_equal(noisy, add_noise(image.astype(np.float64), SIGMAS, seed=(0, 7)))
    assert noisy.min() < 0 or noisy.max() > 1  # not clipped, as gray noise
    with pytest.raises(ValueError, match="3 per-channel sigmas for an image of 1 channel"):
        add_noise(np.zeros((8, 8, 1)), SIGMAS)


def test_tf_twin_draws_per_channel_sigmas_per_sample(colour):
    _, image = colour[0]
    levels = [(5, 25, 50), (50, 25, 5)]
    seen = set()
    for i in range(8):
        noisy = tf_add_noise(image, levels, seed=[i, 3]).numpy()
        sigmas = _channel_sigmas(noisy, image)
        nearest = min(levels, key=lambda level: np.abs(np.subtract(sigmas, level)).sum())
        np.testing.assert_allclose(sigmas, nearest, rtol=0.06)
        seen.add(nearest)
    assert len(seen) == 2


@pytest.mark.parametrize("pipeline", ["tf.data", "numpy"])
def test_training_pairs_are_colour_with_per_channel_noise(colour, pipeline):
    kwargs = dict(task="denoise_rgb", levels=[SIGMAS], patch_size=48, batch_size=16, mode="RGB",
                  augment=False)
    if pipeline == "tf.data":
        x, y = next(iter(training_dataset(colour, **kwargs)))
        x, y = x.numpy(), y.numpy()
    else:
        x, y = NumpyPatches(colour, steps_per_epoch=1, **kwargs)[0]
    assert x.shape == y.shape == (16, 48, 48, 3)
    np.testing.assert_allclose(_channel_sigmas(x, y), SIGMAS, rtol=0.05)


def test_protocol_scores_colour_noise_on_rgb(colour):
    pairs = evaluation_pairs(colour, "denoise_rgb", SIGMAS)
    assert all(degraded.shape[-1] == 3 for _, degraded, _ in pairs)
    psnrs = [score(degraded, clean, "denoise_rgb", SIGMAS)["psnr"] for _, degraded, clean in pairs]
    expected = 10 * np.log10(255 ** 2 / np.mean(np.square(SIGMAS)))  # MSE over R, G and B
    assert np.mean(psnrs) == pytest.approx(expected, abs=0.15)


def test_a_gray_model_is_refused_for_a_colour_task():
    assert input_mode(zoo.info("dncnn_rgb"), "denoise_rgb") == "RGB"
    with pytest.raises(ValueError, match="xdncnn takes gray input"):
        input_mode(zoo.info("xdncnn"), "denoise_rgb")


def test_train_and_evaluate_a_colour_denoiser_from_the_cli(tmp_path, colour, capsys):
    data = tmp_path / "rgb"
    for name, image in colour:
        write_image(data / f"{name}.png", image)
    out = tmp_path / "run"
    assert main(["train", "--model", "dncnn_rgb", "--set", "depth=3", "--set", "filters=8",
                 "--task", "denoise_rgb", "--level", "5/25/50", "--train", str(data),
                 "--val", str(data), "--steps", "4", "--batch", "4", "--patch", "32",
                 "--out", str(out)]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["levels"] == [[5, 25, 50]]
    capsys.readouterr()
    assert main(["evaluate", "--model", "dncnn_rgb", "--weights", str(out / "last.keras"),
                 "--task", "denoise_rgb",
                 "--level", "5/25/50", "--data", str(data), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["results"][0]["mean"]
    assert result["psnr"] == pytest.approx(run["val_psnr"], abs=0.005)
