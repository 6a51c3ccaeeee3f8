"""zoo evaluate: paper-style tables whose input columns are the published ones."""

import json

import numpy as np
import pytest

import zoo
from zoo.cli import main
from zoo.evaluate import evaluate_model, results_table

from .data_paths import DATA, needs

TINY = ["--set", "blocks=1", "--set", "recursions=1", "--set", "filters=8"]


# The degraded inputs' scores, published (MemNet Tables 4-5: bicubic x3 on Set5, JPEG q10 on
# Classic5) or analytic (noise of sigma 25, unclipped: 10 log10(255^2 / 25^2) = 20.17 dB).
PUBLISHED_INPUT = {"Set5": (30.39, 0.005), "Classic5": (27.82, 0.005), "Set12": (20.17, 0.05)}


@needs("Set12", "Set5", "Classic5")
@pytest.mark.parametrize("task,level,folder", [("denoise", 25, "Set12"), ("sr", 3, "Set5"),
                                               ("jpeg", 10, "Classic5")])
def test_untrained_model_end_to_end_and_input_columns_are_the_published_ones(task, level, folder,
                                                                              capsys):
    code = main(["evaluate", "--model", "memnet", *TINY, "--task", task, "--level", str(level),
                 "--data", str(DATA / folder), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err[-2000:]
    [row] = json.loads(out)["results"]
    assert set(row["images"]) == {path.stem for path in (DATA / folder).iterdir()
                                  if path.suffix.lower() in (".png", ".bmp", ".jpg", ".tif")}
    expected, tolerance = PUBLISHED_INPUT[folder]
    assert row["mean"]["input_psnr"] == pytest.approx(expected, abs=tolerance)
    assert np.isfinite(row["mean"]["psnr"])


@pytest.mark.slow  # 68 images, tiled: half a minute
@needs("BSD68")
def test_bsd68_denoising_runs(tmp_path):
    model = zoo.build("xnet", layers=1, filters=4)
    evaluation = evaluate_model(model, zoo.info("xnet"), "denoise", [50], [DATA / "BSD68"], tile=128)
    assert len(evaluation["results"][0]["images"]) == 68
    assert evaluation["results"][0]["mean"]["input_psnr"] == pytest.approx(14.15, abs=0.05)


def test_intermediate_predictions_are_scored(tmp_path, rng):
    from zoo.data.io import write_image
    write_image(tmp_path / "a.png", rng.random((24, 24, 1)))
    model = zoo.build("memnet", blocks=2, recursions=1, filters=8, multi_supervised=True)
    evaluation = evaluate_model(model, zoo.info("memnet"), "denoise", [25], [tmp_path],
                                intermediate=True)
    mean = evaluation["results"][0]["mean"]
    assert {"psnr", "y_1_psnr", "y_2_psnr", "input_psnr"} <= set(mean)
    table = results_table(evaluation)
    assert "| y_1 | y_2 |" in table.splitlines()[0] + " |" or "y_1" in table.splitlines()[0]
