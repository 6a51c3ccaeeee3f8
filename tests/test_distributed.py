"""Multi-worker training (TensorFlow), resume after a killed worker, JAX data parallelism."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import keras

import zoo  # noqa: F401 (registers the layers and metrics that saved models use)

ROOT = Path(__file__).resolve().parents[1]

WORKER = """
import json, sys
import keras
import zoo.train
from zoo.train import TrainConfig, train
built = []  # the model train() builds, to read its batch norms' settings
build_model = zoo.train.build_model
zoo.train.build_model = lambda config: built.append(build_model(config)) or built[-1]
run = train(TrainConfig(**json.loads(sys.argv[1])))
norms = [l for l in built[0]._flatten_layers()
         if isinstance(l, keras.layers.BatchNormalization)]
print("RUN " + json.dumps({**{k: run[k] for k in ("steps", "weights_sha256", "chief", "replicas",
                                                  "workers", "resumed_from_step")},
                           "synchronized": [l.synchronized for l in norms]}))
"""


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def config(folder, out, **recipe):
    return {"model": "xnet", "overrides": {"layers": 2, "filters": 8}, "train": [str(folder)],
            "val": [str(folder)], "val_limit": 1, "strategy": "multiworker", "out": str(out),
            "tensorboard_images": 1,
            "recipe_overrides": {"patch_size": 24, "batch_size": 8, **recipe}}


def start_cluster(configs, tmp):
    """One process per worker config, on free localhost ports; temporary files go to ``tmp``."""
    hosts = [f"127.0.0.1:{p}" for p in free_ports(len(configs))]
    processes = []
    for index, c in enumerate(configs):
        tf_config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "TF_CPP_MIN_LOG_LEVEL": "3",
               "TMPDIR": str(tmp), "CUDA_VISIBLE_DEVICES": ""}
        processes.append(subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(c)], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True, cwd=ROOT))
    return processes


def finish(processes, timeout=600):
    runs = []
    for p in processes:
        stdout, stderr = p.communicate(timeout=timeout)
        assert p.returncode == 0, stderr[-3000:]
        runs.append(json.loads(stdout.split("RUN ")[-1]))
    return runs


# Cheap checks, in the default run -----------------------------------------------------------

def test_multiworker_without_tf_config_is_a_clear_error(monkeypatch):
    from zoo.train import make_strategy

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        make_strategy("multiworker")


def test_a_single_process_writes_its_outputs_whatever_tf_config_says(monkeypatch):
    from zoo.train import _is_chief, make_strategy

    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]},
                                                "task": {"type": "worker", "index": 1}}))
    assert _is_chief(make_strategy("default"))


def test_numpy_batches_do_not_depend_on_where_a_run_resumed(folder):
    from zoo.data.pipeline import NumpyPatches
    from zoo.train import _StepPatches

    base = NumpyPatches(str(folder), task="denoise", levels=[25], patch_size=16, batch_size=2,
                        steps_per_epoch=3, seed=5)
    straight, data = [], _StepPatches(base)
    for _ in range(2):
        straight += [data[i] for i in range(len(data))]
        data.on_epoch_end()
    resumed = _StepPatches(base, epoch=1, offset=1)  # a run that stopped after step 4
    assert len(resumed) == 2
    for i in range(2):
        for a, b in zip(resumed[i], straight[4 + i]):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(straight[0][0], straight[3][0])  # the epochs differ


class Interrupted(Exception):
    pass


def test_an_interrupted_run_resumes_to_the_uninterrupted_weights(folder, tmp_path, monkeypatch):
    """One process, tf.data: stopped right after the backup of step 4 of 6, then run again."""
    import zoo.train
    from zoo.train import TrainConfig, train

    def run(out):
        return train(TrainConfig(model="xnet", overrides={"layers": 1, "filters": 8},
                                 train=[str(folder)], val=[str(folder)], val_limit=1,
                                 tensorboard_images=0, checkpoint_every=2, out=str(out),
                                 recipe_overrides={"steps": 6, "steps_per_epoch": 3,
                                                   "patch_size": 24, "batch_size": 4}))

    uninterrupted = run(tmp_path / "straight")

    class StopAtFour(zoo.train.StopAt):
        def on_train_batch_end(self, batch, logs=None):
            if zoo.train._step(self.model) == 4:  # after the backup callback saved step 4
                raise Interrupted
            super().on_train_batch_end(batch, logs)

    with monkeypatch.context() as patch:
        patch.setattr(zoo.train, "StopAt", StopAtFour)
        with pytest.raises(Interrupted):
            run(tmp_path / "resumed")
    resumed = run(tmp_path / "resumed")
    assert resumed["resumed_from_step"] == 4 and resumed["steps"] == 6
    straight = keras.saving.load_model(tmp_path / "straight" / "last.keras", compile=False)
    again = keras.saving.load_model(tmp_path / "resumed" / "last.keras", compile=False)
    for a, b in zip(again.get_weights(), straight.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert uninterrupted["steps"] == 6


# Several processes: slow -------------------------------------------------------------------

@pytest.mark.slow  # two TensorFlow workers on two cores: about 20 s
def test_two_workers_train_the_same_weights_and_only_the_chief_writes(folder, tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    outs = [tmp_path / "w0", tmp_path / "w1"]
    runs = finish(start_cluster([config(folder, o, steps=5, steps_per_epoch=3) for o in outs],
                                scratch))
    assert [r["chief"] for r in runs] == [True, False]
    assert all(r["steps"] == 5 and r["replicas"] == 2 and r["workers"] == 2 for r in runs)
    assert runs[0]["weights_sha256"] == runs[1]["weights_sha256"]  # all-reduced gradients
    saved = json.loads((outs[0] / "run.json").read_text())
    assert saved["steps"] == 5 and saved["replicas"] == 2
    assert {"run.json", "last.keras", "best.keras", "backup", "logs"} <= {
        p.name for p in outs[0].iterdir()}
    assert not outs[1].exists()  # the other worker wrote to a temporary folder...
    assert list(scratch.iterdir()) == []  # ...and removed it
    # xnet's batch norms live inside its xUnits; built in the strategy's scope, they all sync
    assert all(r["synchronized"] and all(r["synchronized"]) for r in runs)


@pytest.mark.slow  # three two-worker runs, one killed: about a minute
def test_killed_worker_resumes_to_the_uninterrupted_weights(folder, tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    recipe = dict(steps=30, steps_per_epoch=10)
    reference = tmp_path / "reference"
    finish(start_cluster([config(folder, reference / f"w{i}", **recipe) for i in range(2)],
                         scratch))

    outs = [tmp_path / "w0", tmp_path / "w1"]
    configs = [{**config(folder, o, **recipe), "checkpoint_every": 3} for o in outs]
    processes = start_cluster(configs, scratch)
    state, deadline, saved = outs[0] / "backup" / "state.npz", time.time() + 400, 0
    while time.time() < deadline and all(p.poll() is None for p in processes):
        if state.exists():
            try:
                with np.load(state) as s:
                    saved = int(s["step"])
            except (OSError, ValueError, KeyError):  # replaced while being read
                pass
            if saved >= 3:
                break
        time.sleep(0.05)
    assert all(p.poll() is None for p in processes), "the run ended before it could be killed"
    processes[1].send_signal(signal.SIGKILL)  # the non-chief worker dies...
    processes[1].wait()
    try:  # ...and the chief, stuck in or failing its next collective, is stopped too
        processes[0].wait(timeout=20)
    except subprocess.TimeoutExpired:
        processes[0].send_signal(signal.SIGKILL)
        processes[0].wait()
    with np.load(state) as s:
        saved = int(s["step"])
    assert 3 <= saved < 30

    runs = finish(start_cluster(configs, scratch))
    assert all(r["resumed_from_step"] == saved for r in runs)
    assert runs[0]["weights_sha256"] == runs[1]["weights_sha256"]
    run = json.loads((outs[0] / "run.json").read_text())
    assert run["steps"] == 30 and run["resumed_from_step"] == saved
    assert not outs[1].exists()  # (the killed worker's temporary folder stays in TMPDIR)
    resumed = keras.saving.load_model(outs[0] / "last.keras", compile=False).get_weights()
    expected = keras.saving.load_model(reference / "w0" / "last.keras", compile=False).get_weights()
    for a, b in zip(resumed, expected):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


JAX_TRAIN = """
import json, sys
import numpy as np
import keras
from zoo.train import TrainConfig, train
import jax
import zoo.train
built = []  # the model train() builds, to see where its variables live
build_model = zoo.train.build_model
zoo.train.build_model = lambda config: built.append(build_model(config)) or built[-1]
run = train(TrainConfig(**json.loads(sys.argv[1])))
model = keras.saving.load_model(json.loads(sys.argv[1])["out"] + "/last.keras")
np.savez(sys.argv[2], *model.get_weights())
placed = {len(v.value.sharding.device_set) for v in built[0].weights}
print("RUN " + json.dumps({"replicas": run["replicas"], "steps": run["steps"],
                           "devices": len(jax.devices()), "lr": run["final"]["learning_rate"],
                           "variable_devices": sorted(placed)}))
"""


@pytest.mark.slow  # two JAX processes: about 25 s
def test_jax_data_parallel_averages_the_two_replicas_gradients(folder, tmp_path):
    pytest.importorskip("jax")
    results = {}
    for name, devices, strategy in (("two", 2, "mirrored"), ("one", 1, "default")):
        c = {"model": "xnet", "overrides": {"layers": 2, "filters": 8}, "train": [str(folder)],
             "val": [str(folder)], "val_limit": 1, "strategy": strategy, "data_path": "numpy",
             "out": str(tmp_path / name),
             "recipe_overrides": {"steps": 6, "steps_per_epoch": 6, "patch_size": 24,
                                  "batch_size": 8, "optimizer": "sgd",
                                  "learning_rate": 0.05, "final_learning_rate": 0.01}}
        env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
               "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
        result = subprocess.run([sys.executable, "-c", JAX_TRAIN, json.dumps(c),
                                 str(tmp_path / f"{name}.npz")], capture_output=True, text=True,
                                timeout=600, env=env, cwd=ROOT)
        assert result.returncode == 0, result.stderr[-3000:]
        results[name] = json.loads(result.stdout.split("RUN ")[-1])
    assert results["two"]["replicas"] == 2 and results["two"]["devices"] == 2
    assert results["one"]["replicas"] == 1 and results["two"]["steps"] == 6
    assert results["two"]["variable_devices"] == [2]  # every variable replicated on both
    assert results["one"]["variable_devices"] == [1]
    assert results["two"]["lr"] == pytest.approx(0.01, rel=1e-5) == results["one"]["lr"]
    with np.load(tmp_path / "two.npz") as two, np.load(tmp_path / "one.npz") as one:
        assert len(two.files) == len(one.files)
        for key in one.files:
            # Each device saw half of the global batch of 8; under plain SGD the update is
            # the one-device update on all 8 patches, so the shards' gradients were averaged
            # (summed, every step would be twice as long).
            np.testing.assert_allclose(two[key], one[key], rtol=1e-4, atol=1e-5, err_msg=key)
