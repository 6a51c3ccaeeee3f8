"""The registry and the command line: names, descriptions, clear errors."""

import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import zoo
from zoo import cli

REQUIRED = ["xdncnn", "xdncnn_rgb", "dncnn_s", "dncnn_rgb", "srcnn", "xsrcnn_f", "xsrcnn_c",
            "srresnet", "xsrresnet", "convnet", "xnet", "vdsr", "memnet", "nlrn"]


def test_every_required_name_is_registered():
    assert set(REQUIRED) <= set(zoo.list_models())


def test_list_models_filters_by_pattern():
    assert zoo.list_models("xsrcnn*") == ["xsrcnn_c", "xsrcnn_f"]
    assert zoo.list_models("nothing*") == []


def test_describe_reports_conventions_and_input():
    d = zoo.describe("xsrresnet")
    assert d["scale"] == 4 and d["upsampling"] == "sub-pixel" and d["input"] == "RGB"
    assert d["params"]["paper"] == 1_155_968
    assert d["params"]["keras"] > d["params"]["paper"] > d["params"]["kernels"]
    assert "xUnit" in d["paper"]


def test_overrides_reach_the_builder():
    model = zoo.build("memnet", blocks=2, recursions=3, filters=8, name="tiny")
    assert model.name == "tiny"
    assert len([l for l in model.layers if l.name.startswith("memory_block")]) == 2


def test_unknown_model_suggests_close_names():
    with pytest.raises(ValueError, match=r"Unknown model 'xdncn'.*'xdncnn'"):
        zoo.build("xdncn")


def test_override_the_builder_does_not_take():
    with pytest.raises(TypeError, match=r"takes no override 'recursions'.*It takes: .*blocks"):
        zoo.build("xdncnn", recursions=3)


def test_wrong_channel_count_is_a_clear_error():
    model = zoo.build("xdncnn")
    with pytest.raises(ValueError, match=r"expected axis -1 of input shape to have value 1"):
        model(np.zeros((1, 16, 16, 3), "float32"))


@pytest.mark.parametrize("channels", [0, -1, 2.5, True])
def test_bad_channel_argument(channels):
    with pytest.raises(ValueError, match="channels must be a positive integer"):
        zoo.build("xdncnn", channels=channels)


def test_bad_architecture_arguments():
    with pytest.raises(ValueError, match="neighbourhood must be an odd"):
        zoo.build("nlrn", neighbourhood=4)
    with pytest.raises(ValueError, match="scale must be one of"):
        zoo.build("srresnet", scale=5)


def test_cli_list_prints_every_model(capsys):
    assert cli.main(["list", "x*"]) == 0
    out = capsys.readouterr().out
    for name in zoo.list_models("x*"):
        assert f"| {name} " in out
    assert "303,616" in out  # xDnCNN under the paper's convention


def test_cli_error_is_one_line(capsys):
    from zoo import cli

    assert cli.main(["list", "--json", "nothing*"]) == 0
    assert capsys.readouterr().out.strip() == "[]"
    with pytest.raises(SystemExit) as caught:
        cli.main(["frobnicate"])
    assert caught.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_import_prints_no_tensorflow_start_up_log():
    """TF 2.21 logs absl/oneDNN/cuInit lines at start-up whatever TF_CPP_MIN_LOG_LEVEL says;
    the zoo silences them when it loads Keras, unless asked (ZOO_VERBOSE=1 / --verbose); and a
    ``.keras`` file of zoo layers loads with plain Keras after ``import zoo``."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "ZOO_VERBOSE")}
    code = ("import sys, numpy as np, zoo, keras; "
            "m = zoo.build('xnet', layers=1, filters=4); m.save(sys.argv[1]); "
            "print(keras.saving.load_model(sys.argv[1])(np.zeros((1, 8, 8, 1), 'float32')).shape)")
    with tempfile.TemporaryDirectory() as folder:
        saved = os.path.join(folder, "xnet.keras")
        quiet = subprocess.run([sys.executable, "-c", code, saved], env=env, capture_output=True,
                               text=True, timeout=300)
    assert quiet.returncode == 0 and "(1, 8, 8, 1)" in quiet.stdout, quiet.stderr[-2000:]
    assert quiet.stderr.strip() == "", quiet.stderr[-2000:]
    verbose = subprocess.run([sys.executable, "-c", "import zoo, keras"],
                             env={**env, "ZOO_VERBOSE": "1"}, capture_output=True, text=True,
                             timeout=300)
    assert "0000 00:00" in verbose.stderr  # TensorFlow's own log lines, as asked


def test_help_imports_no_tensorflow():
    """``zoo --help`` and ``zoo export --help`` answer without Keras, TensorFlow or LiteRT."""
    code = ("import sys\nfrom zoo.cli import main\n"
            "for argv in (['--help'], ['export', '--help'], ['train', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('loaded:', sorted(m for m in ('tensorflow', 'keras', 'ai_edge_litert', 'jax', "
            "'torch') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--qat" in done.stdout and "--verbose" in done.stdout
    assert done.stdout.strip().endswith("loaded: []"), done.stdout[-500:]
