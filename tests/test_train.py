"""Training: model.fit recipes, validation, TensorBoard, resume after a kill, strategies."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import keras

import zoo
from zoo.train import TrainConfig, build_model, multi_supervised_loss_weights, train

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model", "xnet", "--set", "layers=2", "--set", "filters=16", "--patch", "24",
        "--batch", "8", "--val-limit", "1"]


def _cli(args, **kwargs):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen([sys.executable, str(ROOT / "train_keras.py"), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_short_run_lowers_loss_and_beats_the_degraded_input(folder, tmp_path):
    # 60 steps of 16 filters gain 2.8 dB over the noisy input (120 of 32 filters: 8.3 dB, in
    # 35 s against 15)
    run = train(TrainConfig(model="xnet", overrides={"layers": 3, "filters": 16},
                            train=[str(folder)], val=[str(folder)], recipe="demo",
                            recipe_overrides={"steps": 60, "steps_per_epoch": 20,
                                              "patch_size": 32, "batch_size": 16},
                            out=str(tmp_path / "run")))
    loss = run["history"]["loss"]
    assert loss[-1] < loss[0]
    assert run["val_psnr"] > run["input_psnr"] + 1.0
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    assert saved["val_psnr"] == run["val_psnr"] and saved["steps"] == 60
    assert saved["config"]["model"] == "xnet" and "tensorflow" in saved["versions"]
    restored = keras.saving.load_model(tmp_path / "run" / "best.keras")
    assert restored.count_params() == zoo.build("xnet", layers=3, filters=16).count_params()


def test_tensorboard_has_validation_psnr_and_images(folder, tmp_path):
    import tensorflow as tf
    train(TrainConfig(model="xnet", overrides={"layers": 1, "filters": 8}, train=[str(folder)],
                      val=[str(folder)], recipe_overrides={"steps": 10, "steps_per_epoch": 5,
                                                           "patch_size": 24, "batch_size": 4},
                      tensorboard_images=2, out=str(tmp_path)))
    tags = {}
    for event_file in (tmp_path / "logs").rglob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for value in event.summary.value:
                kind = value.metadata.plugin_data.plugin_name
                tags.setdefault(kind, set()).add(value.tag)
    assert "val_psnr" in tags["scalars"] and "learning_rate" in tags["scalars"]
    assert len(tags["images"]) == 2 and all("degraded | restored | clean" in t for t in tags["images"])
    assert any(t.endswith("loss") for t in tags["scalars"])


@pytest.mark.slow  # two 3000-step runs, one killed: about two minutes
def test_killed_run_resumes_from_its_step(folder, tmp_path):
    out = tmp_path / "run"
    args = TINY + ["--train", str(folder), "--val", str(folder), "--steps", "3000",
                   "--steps-per-epoch", "1000", "--checkpoint-every", "20", "--out", str(out)]
    process = _cli(args)
    state, deadline = out / "backup" / "state.npz", time.time() + 240
    saved = 0
    while time.time() < deadline and process.poll() is None:
        if state.exists():
            with np.load(state) as s:
                saved = int(s["step"])
            if saved >= 100:
                break
        time.sleep(0.2)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    with np.load(state) as s:
        saved, seconds_killed = int(s["step"]), float(s["seconds"])
    assert 100 <= saved < 3000 and seconds_killed > 0

    resumed = _cli(args)
    stdout, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr[-2000:]
    run = json.loads((out / "run.json").read_text())
    assert run["resumed_from_step"] >= saved
    # the wall time counts the killed run's seconds too (up to its last backup)
    assert run["wall_seconds"] > seconds_killed
    assert run["steps"] == 3000
    # The resumed run did the remaining steps, not all of them: first epoch is partial.
    first_epoch_steps = 1000 - run["resumed_from_step"] % 1000
    assert "Epoch" in stdout and f"{first_epoch_steps}/{first_epoch_steps}" in stdout
    model = keras.saving.load_model(out / "last.keras")
    assert model(np.zeros((1, 16, 16, 1), "float32")).shape == (1, 16, 16, 1)


MIRRORED = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import sys, json
from zoo.cli import main
sys.exit(main(["train", *json.loads(sys.argv[1])]))
"""


def test_mirrored_strategy_trains_on_two_cpus(folder, tmp_path):
    args = ["--model", "convnet", "--set", "layers=2", "--set", "filters=16", "--patch", "24",
            "--batch", "8", "--val-limit", "1", "--train", str(folder), "--val", str(folder),
            "--steps", "6", "--steps-per-epoch", "3", "--strategy", "mirrored", "--out", str(tmp_path)]
    result = subprocess.run([sys.executable, "-c", MIRRORED, json.dumps(args)], capture_output=True,
                            text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((tmp_path / "run.json").read_text())["replicas"] == 2
    model = keras.saving.load_model(tmp_path / "last.keras")
    batch_norms = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert batch_norms and all(l.synchronized for l in batch_norms)
    assert np.isfinite(model.predict(np.full((1, 20, 20, 1), 0.5, "float32"), verbose=0)).all()


def test_steps_are_exact_and_the_schedule_ends_at_the_recipes_final_rate(folder, tmp_path,
                                                                         capsys):
    from zoo.cli import main
    from zoo.recipes import get_recipe

    # --steps 7 with epochs of 5: one full epoch and a last one of 2 (not 10 steps in all)
    args = ["train", "--model", "xnet", "--set", "layers=1", "--set", "filters=8", "--patch", "24",
            "--batch", "4", "--val-limit", "1", "--train", str(folder), "--val", str(folder),
            "--steps", "7", "--steps-per-epoch", "5", "--recipe", "demo", "--out", str(tmp_path)]
    assert main(args) == 0
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved["steps"] == 7 and saved["resumed_from_step"] == 0
    assert len(saved["history"]["loss"]) == 2  # two epochs, the last one shorter
    final_rate = get_recipe("demo").final_learning_rate  # 1e-3 -> 1e-4
    assert saved["final"]["learning_rate"] == pytest.approx(final_rate, rel=1e-5)
    assert saved["history"]["learning_rate"][-1] == pytest.approx(final_rate, rel=1e-5)
    printed = capsys.readouterr().out
    assert "5/5" in printed and "2/2" in printed  # the progress bar shows the short epoch
    with np.load(tmp_path / "backup" / "state.npz") as state:
        assert int(state["step"]) == 7  # the last step is backed up: a rerun has nothing to do
    assert main(args) == 0
    again = json.loads((tmp_path / "run.json").read_text())
    assert again["resumed_from_step"] == 7 and again["steps"] == 7
    assert again["weights_sha256"] == saved["weights_sha256"]


def test_multi_supervised_loss_is_eq12(rng):
    model = zoo.build("memnet", blocks=3, recursions=1, filters=4, multi_supervised=True)
    weights = multi_supervised_loss_weights(model.output)
    assert weights["y"] == pytest.approx(1 / 4) and weights["y_2"] == pytest.approx((1 - 1 / 4) / 3)
    model.compile(optimizer="sgd", loss={k: "mse" for k in weights}, loss_weights=weights)
    model.get_layer("y").w.assign(np.array([0.2, 0.5, 0.9], "float32"))
    x = rng.random((2, 8, 8, 1), dtype="float32")
    clean = rng.random((2, 8, 8, 1), dtype="float32")
    out = {k: np.asarray(v) for k, v in model(x).items()}
    mse = {k: np.mean((v - clean) ** 2) for k, v in out.items()}
    alpha = 1 / 4
    by_hand = alpha * mse["y"] + (1 - alpha) / 3 * sum(mse[f"y_{m}"] for m in (1, 2, 3))
    got = model.evaluate(x, {k: clean for k in weights}, verbose=0, return_dict=True)["loss"]
    assert got == pytest.approx(by_hand, rel=1e-5)


@pytest.mark.parametrize("args,message", [
    (["--train", "/nonexistent/folder"], "does not exist"),
    (["--recipe", "adamw"], "unknown recipe"),
    (["--task", "sr", "--level", "1.5"], "an SR scale is an integer >= 2"),
    (["--task", "jpeg", "--level", "0"], "a JPEG quality is an integer in 1..100"),
    (["--patch", "500"], "is at least 500x500 px"),
])
def test_bad_input_is_a_one_line_error(folder, tmp_path, args, message, capsys):
    from zoo import cli

    code = cli.main(["train", "--model", "xnet", "--train", str(folder), "--steps", "1",
                     "--out", str(tmp_path)] + args)
    stderr = capsys.readouterr().err
    assert code == 2
    errors = [line for line in stderr.splitlines() if line.startswith("zoo train: error:")]
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in stderr


def test_empty_folder_is_a_one_line_error(tmp_path, capsys):
    from zoo import cli

    code = cli.main(["train", "--train", str(tmp_path), "--steps", "1", "--out", str(tmp_path / "run")])
    stderr = capsys.readouterr().err
    assert code == 2 and "no image files" in stderr and "Traceback" not in stderr


def test_mixed_precision_computes_in_bfloat16_on_cpu(folder, tmp_path):
    run = train(TrainConfig(model="xnet", overrides={"layers": 1, "filters": 8}, train=[str(folder)],
                            val=[str(folder)], mixed_precision=True, val_limit=1,
                            recipe_overrides={"steps": 4, "steps_per_epoch": 2, "patch_size": 24,
                                              "batch_size": 4}, out=str(tmp_path)))
    assert keras.mixed_precision.global_policy().name == "float32"  # left as it was
    model = keras.saving.load_model(tmp_path / "last.keras")
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert convs and all(l.compute_dtype == "bfloat16" for l in convs)
    assert model.output.dtype == "float32"
    assert np.isfinite(run["val_psnr"])


NO_TENSORFLOW = """
import sys

class Block:  # TensorFlow is absent, as on a GPU machine with only JAX
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError("tensorflow is not installed here")

sys.meta_path.insert(0, Block())
import json
from zoo.train import TrainConfig, train
run = train(TrainConfig(**json.loads(sys.argv[1])))
assert "tensorflow" not in sys.modules
print(json.dumps({"backend": run["versions"]["backend"], "steps": run["steps"],
                  "val_psnr": run["val_psnr"], "input_psnr": run["input_psnr"]}))
"""


@pytest.mark.slow  # a JAX process without TensorFlow: about 30 s
def test_jax_backend_trains_without_tensorflow_and_tf_loads_the_weights(folder, tmp_path):
    pytest.importorskip("jax")
    config = {"model": "xnet", "overrides": {"layers": 2, "filters": 16}, "train": [str(folder)],
              "val": [str(folder)], "val_limit": 1, "out": str(tmp_path),
              "recipe_overrides": {"steps": 60, "steps_per_epoch": 30, "patch_size": 32,
                                   "batch_size": 16}}
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", NO_TENSORFLOW, json.dumps(config)],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads(result.stdout.strip().splitlines()[-1])
    assert run["backend"] == "jax" and run["steps"] == 60
    assert run["val_psnr"] > run["input_psnr"]
    assert (tmp_path / "history.csv").exists()
    # The JAX-trained weights load under TensorFlow and give the same numbers.
    trained = keras.saving.load_model(tmp_path / "best.keras")
    model = zoo.build("xnet", layers=2, filters=16)
    model.set_weights(trained.get_weights())
    x = np.random.default_rng(0).random((1, 20, 20, 1), dtype="float32")
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(trained(x)), atol=1e-6)


@pytest.mark.parametrize("name,overrides", [("xdncnn", {"filters": 8, "blocks": 1}),
                                            ("dncnn_s", {"depth": 3, "filters": 8})])
def test_residual_models_start_as_the_identity_unless_asked_not_to(rng, name, overrides):
    image = rng.random((1, 12, 10, 1), dtype="float32")
    identity = build_model(TrainConfig(model=name, overrides=overrides))
    np.testing.assert_allclose(np.asarray(identity(image, training=False)), image, atol=1e-6)
    plain = build_model(TrainConfig(model=name, overrides=overrides, identity_start=False))
    assert np.abs(np.asarray(plain(image, training=False)) - image).mean() > 1e-3


def test_a_non_residual_model_keeps_its_initialisation(rng):
    model = build_model(TrainConfig(model="srcnn", task="sr", levels=[3]))
    assert np.abs(keras.ops.convert_to_numpy(model.layers[-1].kernel)).max() > 0
    image = rng.random((1, 12, 10, 1), dtype="float32")
    assert np.abs(np.asarray(model(image, training=False))).max() > 1e-3  # not a black image
