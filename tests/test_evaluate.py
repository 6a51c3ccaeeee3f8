"""zoo evaluate: paper-style tables whose input columns are zoo baseline's."""

import json

import numpy as np
import pytest

import zoo
from zoo.cli import main
from zoo.evaluate import baseline, evaluate_model, results_table

from .data_paths import DATA, needs

TINY = ["--set", "blocks=1", "--set", "recursions=1", "--set", "filters=8"]


@needs("Set12", "Set5", "Classic5")
@pytest.mark.parametrize("task,level,folder", [("denoise", 25, "Set12"), ("sr", 3, "Set5"),
                                               ("jpeg", 10, "Classic5")])
def test_untrained_model_end_to_end_and_input_columns_equal_baseline(task, level, folder, capsys):
    code = main(["evaluate", "--model", "memnet", *TINY, "--task", task, "--level", str(level),
                 "--data", str(DATA / folder), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err[-2000:]
    evaluation = json.loads(out)
    [row] = evaluation["results"]
    reference = baseline(task, level, DATA / folder)
    assert set(row["images"]) == set(reference["images"])
    for name, metrics in reference["images"].items():
        assert row["images"][name]["input_psnr"] == metrics["psnr"]
        assert row["images"][name]["input_ssim"] == metrics["ssim"]
    assert np.isfinite(row["mean"]["psnr"])


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
