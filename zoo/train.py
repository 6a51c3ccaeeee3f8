"""Training with ``model.fit`` on ``tf.data``: losses, callbacks, resume, strategies.

``train(...)`` is what ``train_keras.py``/``zoo train`` and the notebooks call.
Its output folder holds:

- ``run.json``: the configuration, library versions and final metrics
  (``val_psnr``, ``val_ssim``, ``input_psnr``, ``input_ssim``, ``loss``);
- ``best.keras`` (highest validation PSNR) and ``last.keras``;
- ``backup/state.npz``: weights, optimiser state, step and seconds so far, every few steps,
  from which an interrupted run resumes at the step where it stopped;
- ``logs/``: TensorBoard (loss, learning rate, validation PSNR/SSIM under the
  SPEC §4 protocol on whole images, and degraded | restored | clean images).

Every file is written to a temporary name and renamed, so a run killed
mid-write never leaves a corrupt checkpoint.
"""

import contextlib
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import keras

from zoo._tf import tf

from zoo import registry
from zoo.data.demo import demo_images
from zoo.data.pipeline import NumpyPatches, check_levels, evaluation_pairs, training_dataset
from zoo.metrics import PSNRMetric, protocol_metrics
from zoo.recipes import get_recipe, make_optimizer

TASK_LEVELS = {"denoise": "sigma", "sr": "scale", "jpeg": "quality"}


@dataclasses.dataclass
class TrainConfig:
    """Everything a run depends on; saved to ``run.json``."""

    model: str = "xdncnn"
    overrides: dict = dataclasses.field(default_factory=dict)
    task: str = "denoise"
    levels: list = dataclasses.field(default_factory=lambda: [25])
    train: list = None            # folders; None: the built-in demo images but the held-out two
    val: list = None              # folders; None: the two held-out demo images
    recipe: str = "demo"
    recipe_overrides: dict = dataclasses.field(default_factory=dict)
    seed: int = 0
    out: str = "runs/run"
    mixed_precision: bool = False
    strategy: str = "default"     # "default", "mirrored" or "multiworker"
    val_limit: int = 0            # validate on the first N images only (0: all)
    tensorboard_images: int = 3
    checkpoint_every: int = 0     # steps between backups (0: every epoch's quarter)
    data_path: str = None         # "tf" (tf.data) or "numpy" (PyDataset, no TensorFlow needed);
                                  # None: tf.data on the TensorFlow backend, numpy otherwise


def input_mode(info, task):
    """Colour convention of the data for a model: RGB models get RGB; gray for denoising, else Y."""
    if info.input == "RGB":
        return "RGB"
    return "gray" if task == "denoise" else "Y"


def multi_supervised_loss_weights(outputs):
    """MemNet Eq. 12: alpha on the final output y, (1 - alpha) / M on each y_m, alpha = 1/(M+1)."""
    heads = [k for k in outputs if k != "y"]
    alpha = 1.0 / (len(heads) + 1)
    return {"y": alpha, **{k: (1 - alpha) / len(heads) for k in heads}}


def on_tensorflow():
    return keras.backend.backend() == "tensorflow"


class SingleDevice:
    """The strategy stand-in off TensorFlow: one device, a no-op scope."""

    num_replicas_in_sync = 1

    def scope(self):
        return contextlib.nullcontext()


def make_strategy(name):
    """A ``tf.distribute`` strategy; ``mirrored`` uses every GPU, or every logical CPU if none."""
    if name == "default":
        return tf.distribute.get_strategy() if on_tensorflow() else SingleDevice()
    if not on_tensorflow():
        raise ValueError(f"--strategy {name} needs the TensorFlow backend (tf.distribute)")
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multiworker":  # reads TF_CONFIG
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}; use default, mirrored or multiworker")


def _is_chief():
    config = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    return config.get("type", "chief") == "chief" or (
        config.get("type") == "worker" and config.get("index", 0) == 0)


def atomic_write_text(path, text):
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def atomic_save_model(model, path):
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


class ResumableCheckpoint(keras.callbacks.Callback):
    """Saves weights, optimiser variables, the global step and the training seconds so far
    (earlier, interrupted runs included) to ``state.npz`` every ``every`` steps."""

    def __init__(self, folder, every, seconds_before=0.0):
        super().__init__()
        self.path = Path(folder) / "state.npz"
        self.every = max(int(every), 1)
        self.seconds_before = float(seconds_before)
        self.started = time.time()

    def seconds(self):
        """Training seconds of this run and of the runs it resumes."""
        return self.seconds_before + time.time() - self.started

    def on_train_batch_end(self, batch, logs=None):
        step = _step(self.model)
        if step % self.every == 0:
            self.save(step)

    def save(self, step):
        if not _is_chief():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"w{i}": w for i, w in enumerate(self.model.get_weights())}
        arrays.update({f"o{i}": keras.ops.convert_to_numpy(v)
                       for i, v in enumerate(self.model.optimizer.variables)})
        tmp = self.path.with_name(".state.tmp.npz")
        np.savez(tmp, step=step, seconds=self.seconds(), **arrays)
        os.replace(tmp, self.path)

    @staticmethod
    def restore(model, folder):
        """Loads ``state.npz`` into ``model`` and its optimiser; returns the step (0 if none)."""
        path = Path(folder) / "state.npz"
        if not path.exists():
            return 0
        with np.load(path) as state:
            weights = [state[f"w{i}"] for i in range(len(model.get_weights()))]
            model.set_weights(weights)
            optimizer = model.optimizer
            if not optimizer.built:
                optimizer.build(model.trainable_variables)
            for i, variable in enumerate(optimizer.variables):
                variable.assign(state[f"o{i}"])
            return int(state["step"])

    @staticmethod
    def seconds_saved(folder):
        """Training seconds recorded in ``state.npz`` (0 if none, or a backup from before)."""
        path = Path(folder) / "state.npz"
        if not path.exists():
            return 0.0
        with np.load(path) as state:
            return float(state["seconds"]) if "seconds" in state.files else 0.0


class Validation(keras.callbacks.Callback):
    """Whole-image validation under SPEC §4 at the end of every epoch.

    Adds ``val_psnr``/``val_ssim`` (mean over levels and images), per-level
    values, ``input_psnr``/``input_ssim`` and ``learning_rate`` to the epoch
    logs (so checkpointing and TensorBoard see them), and writes scalars and
    degraded | restored | clean images to ``logdir``.
    """

    def __init__(self, pairs_by_level, task, logdir, images=3):
        super().__init__()
        self.pairs_by_level = pairs_by_level
        self.task = task
        self.writer = tf.summary.create_file_writer(str(logdir)) if on_tensorflow() else None
        self.images = images
        self.last = {}
        self.input_metrics = {
            level: _mean([protocol_metrics(d, c, task, level) for _, d, c in pairs])
            for level, pairs in pairs_by_level.items()}

    def restore(self, degraded):
        y = self.model(degraded[None], training=False)
        y = y["y"] if isinstance(y, dict) else y
        return np.clip(keras.ops.convert_to_numpy(y)[0].astype(np.float32), 0.0, 1.0)

    def evaluate(self):
        results = {}
        for level, pairs in self.pairs_by_level.items():
            restored = [(name, self.restore(d), d, c) for name, d, c in pairs]
            results[level] = (_mean([protocol_metrics(r, c, self.task, level)
                                     for _, r, _, c in restored]), restored)
        return results

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        results = self.evaluate()
        metrics = {"val_psnr": _mean([m for m, _ in results.values()])["psnr"],
                   "val_ssim": _mean([m for m, _ in results.values()])["ssim"],
                   "input_psnr": _mean(list(self.input_metrics.values()))["psnr"],
                   "input_ssim": _mean(list(self.input_metrics.values()))["ssim"],
                   "learning_rate": float(keras.ops.convert_to_numpy(
                       self.model.optimizer.learning_rate))}
        if len(results) > 1:
            for level, (m, _) in results.items():
                metrics[f"val_psnr_{level}"] = m["psnr"]
        logs.update(metrics)
        self.last = metrics
        if self.writer is None:  # no TensorFlow: the scalars reach the CSV log only
            return
        with self.writer.as_default(step=_step(self.model)):
            for key, value in metrics.items():
                tf.summary.scalar(key, value)
            for level, (_, restored) in results.items():
                for name, r, d, c in restored[: self.images]:
                    tf.summary.image(f"{name}_{TASK_LEVELS[self.task]}{level}"
                                     " (degraded | restored | clean)", _panel(d, r, c)[None])
        self.writer.flush()


def _panel(degraded, restored, clean):
    """Side by side, the degraded image enlarged (nearest) to the clean size if smaller."""
    factor = clean.shape[0] // degraded.shape[0]
    if factor > 1:
        degraded = np.repeat(np.repeat(degraded, factor, 0), factor, 1)
    h, w = clean.shape[:2]
    panel = np.concatenate([np.clip(degraded[:h, :w], 0, 1), restored, clean], axis=1)
    return panel.astype(np.float32)


def _mean(metrics):
    return {k: float(np.mean([m[k] for m in metrics])) for k in ("psnr", "ssim")}


def _step(model):
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


def _gpus():
    if on_tensorflow():
        return [d.name for d in tf.config.list_physical_devices("GPU")]
    if keras.backend.backend() == "jax":
        import jax

        return [str(d) for d in jax.devices() if d.platform == "gpu"]
    return []


def _versions():
    versions = {"python": platform.python_version(), "keras": keras.__version__,
                "numpy": np.__version__, "backend": keras.backend.backend(),
                "platform": platform.platform(), "gpus": _gpus()}
    if on_tensorflow():
        versions["tensorflow"] = tf.__version__
    return versions


def _check(config, info):
    if config.task not in TASK_LEVELS:
        raise ValueError(f"unknown task {config.task!r}; use one of {', '.join(TASK_LEVELS)}")
    levels = check_levels(config.task, config.levels)
    if info.upsampling == "sub-pixel":
        scale = config.overrides.get("scale", info.scale)
        if config.task != "sr" or levels != [scale]:
            raise ValueError(f"{config.model} is a x{scale} sub-pixel SR model: use "
                             f"--task sr --level {scale} (or --set scale=S --level S)")
    for folder in (config.train or []) + (config.val or []):
        if not Path(folder).is_dir():
            raise ValueError(f"data folder {folder!r} does not exist")
    return levels


def _build(config):
    """The model; under ``mixed_precision`` it computes in float16 (GPU) or bfloat16 (CPU)
    with float32 outputs, and the global dtype policy is left as it was."""
    if not config.mixed_precision:
        return registry.build(config.model, **config.overrides)
    previous = keras.mixed_precision.global_policy()
    gpu = bool(_gpus())
    keras.mixed_precision.set_global_policy("mixed_float16" if gpu else "mixed_bfloat16")
    try:
        model = registry.build(config.model, **config.overrides)
        outputs = keras.tree.map_structure(
            lambda t: keras.layers.Activation("linear", dtype="float32")(t), model.output)
        return keras.Model(model.inputs, outputs, name=model.name)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def train(config=None, **kwargs):
    """Trains ``config.model`` (or the fields given as keywords) and returns the final ``run.json``."""
    config = dataclasses.replace(config or TrainConfig(), **kwargs)
    if config.data_path is None:
        config.data_path = "tf" if on_tensorflow() else "numpy"
    if config.data_path not in ("tf", "numpy"):
        raise ValueError(f"data_path must be 'tf' or 'numpy', got {config.data_path!r}")
    info = registry.info(config.model)
    levels = _check(config, info)
    recipe = get_recipe(config.recipe, **config.recipe_overrides)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    mode = input_mode(info, config.task)
    upsampling = info.upsampling if config.task == "sr" and info.upsampling else "interpolated"

    strategy = make_strategy(config.strategy)
    with strategy.scope():
        model = _build(config)
        multi = isinstance(model.output, dict)
        loss_weights = multi_supervised_loss_weights(model.output) if multi else None
        model.compile(optimizer=make_optimizer(recipe, recipe.steps),
                      loss={k: "mse" for k in loss_weights} if multi else "mse",
                      loss_weights=loss_weights,
                      metrics={"y": [PSNRMetric()]} if multi else [PSNRMetric()])
    start_step = ResumableCheckpoint.restore(model, out / "backup")
    backup = ResumableCheckpoint(
        out / "backup", config.checkpoint_every or max(recipe.steps_per_epoch // 4, 1),
        ResumableCheckpoint.seconds_saved(out / "backup"))

    # Data: patches for training, whole images for validation.
    train_data = config.train or demo_images(mode, split="train")
    val_data = config.val or demo_images(mode, split="val")
    data_kwargs = dict(task=config.task, levels=levels, patch_size=recipe.patch_size,
                       batch_size=recipe.batch_size, mode=mode, upsampling=upsampling,
                       seed=config.seed + start_step)
    if config.data_path == "tf":
        dataset = training_dataset(train_data, patches=recipe.patches,
                                   stride=recipe.stride or None, **data_kwargs)
        if multi:
            dataset = dataset.map(lambda x, y: (x, {k: y for k in loss_weights}))
    else:  # random crops in numpy; multi-supervised targets are repeated by Keras' loss dict
        dataset = NumpyPatches(train_data, steps_per_epoch=recipe.steps_per_epoch, **data_kwargs)
        if multi:
            raise ValueError("the numpy data path trains single-output models; use the tf.data "
                             "path (TensorFlow backend) for multi-supervised MemNet")
    pairs = {}
    for level in levels:
        triples = evaluation_pairs(val_data, config.task, level, mode=mode, upsampling=upsampling,
                                   seed=config.seed)
        pairs[level] = triples[: config.val_limit or None]

    validation = Validation(pairs, config.task, out / "logs" / "validation_images",
                            config.tensorboard_images)
    callbacks = [
        validation,
        BestAndLast(out),
        backup,
    ]
    if on_tensorflow():
        callbacks.append(keras.callbacks.TensorBoard(out / "logs", update_freq="epoch"))
    else:
        callbacks.append(keras.callbacks.CSVLogger(str(out / "history.csv"), append=True))
    run = {"config": dataclasses.asdict(config), "recipe": dataclasses.asdict(recipe),
           "versions": _versions(), "resumed_from_step": start_step,
           "replicas": strategy.num_replicas_in_sync,
           "params": model.count_params()}
    atomic_write_text(out / "run.json", json.dumps(run, indent=2))

    epochs = -(-recipe.steps // recipe.steps_per_epoch)
    verbose = 1 if sys.stdout.isatty() else 2
    history = {}
    first_epoch, done_in_epoch = divmod(start_step, recipe.steps_per_epoch)
    if start_step >= recipe.steps:
        epochs = first_epoch  # nothing left to do
    if done_in_epoch:  # finish the interrupted epoch first
        h = model.fit(dataset, epochs=first_epoch + 1, initial_epoch=first_epoch,
                      steps_per_epoch=recipe.steps_per_epoch - done_in_epoch,
                      callbacks=callbacks, verbose=verbose, shuffle=False)
        history.update(h.history)
        first_epoch += 1
    if first_epoch < epochs:
        h = model.fit(dataset, epochs=epochs, initial_epoch=first_epoch,
                      steps_per_epoch=recipe.steps_per_epoch, callbacks=callbacks, verbose=verbose, shuffle=False)
        history.update(h.history)

    if not validation.last:  # nothing was left to train: measure the restored weights
        validation.set_model(model)
        validation.on_epoch_end(first_epoch)
    final = dict(validation.last)
    final["loss"] = float(history["loss"][-1]) if history.get("loss") else None
    run.update({"final": final, "val_psnr": final.get("val_psnr"),
                "input_psnr": final.get("input_psnr"),
                "steps": _step(model),
                "wall_seconds": round(backup.seconds(), 1),
                "history": {k: [float(v) for v in vs] for k, vs in history.items()}})
    atomic_write_text(out / "run.json", json.dumps(run, indent=2))
    return run


class BestAndLast(keras.callbacks.Callback):
    """``last.keras`` after every epoch and ``best.keras`` at a new best ``val_psnr``; atomic."""

    def __init__(self, folder):
        super().__init__()
        self.folder = Path(folder)
        self.best = -np.inf
        meta = self.folder / "best.json"
        if meta.exists():
            self.best = json.loads(meta.read_text())["val_psnr"]

    def on_epoch_end(self, epoch, logs=None):
        if not _is_chief():
            return
        atomic_save_model(self.model, self.folder / "last.keras")
        atomic_write_text(self.folder / "last.json", json.dumps({"epoch": epoch + 1}))
        psnr = (logs or {}).get("val_psnr")
        if psnr is not None and psnr > self.best:
            self.best = psnr
            atomic_save_model(self.model, self.folder / "best.keras")
            atomic_write_text(self.folder / "best.json",
                              json.dumps({"val_psnr": psnr, "epoch": epoch + 1}))
