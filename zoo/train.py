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
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import keras

from zoo._tf import tf

from zoo import models
from zoo.data.demo import demo_images
from zoo.files import write_atomically, write_text_atomically
from zoo.data.pipeline import NumpyPatches, training_dataset
from zoo.data.tasks import check_levels, get_task
from zoo.metrics import PSNRMetric
from zoo.protocol import evaluation_pairs, input_image, input_mode, mean_scores, score
from zoo.models.identity import is_residual, start_as_identity
from zoo.recipes import get_recipe, make_optimizer



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
    identity_start: bool = True   # residual models start as the identity (last conv zeroed,
                                  # zoo.models.identity); False: the paper's initialisation


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
    num_workers = 1
    is_chief = True

    def scope(self):
        return contextlib.nullcontext()


class JaxDataParallel:
    """``keras.distribution.DataParallel`` over local JAX devices, shaped like a strategy.

    Variables are replicated on every device and each batch is split along its first
    axis; the jitted step computes the loss over the global batch, so the gradients of
    the shards are averaged (and batch norm sees the statistics of the whole batch).
    """

    num_workers = 1
    is_chief = True

    def __init__(self, devices):
        self.devices = list(devices)
        self.distribution = keras.distribution.DataParallel(devices=self.devices)
        self.num_replicas_in_sync = len(self.devices)

    def scope(self):
        return self.distribution.scope()


def _jax_devices(gpus_only):
    import jax

    gpus = [d for d in jax.local_devices() if d.platform == "gpu"]
    return gpus if gpus or gpus_only else jax.local_devices()


def make_strategy(name):
    """A ``tf.distribute`` strategy; ``mirrored`` uses every GPU, or every logical CPU if none.

    Off TensorFlow (JAX), ``mirrored`` is ``keras.distribution.DataParallel`` over every
    local device (GPUs, else the host's CPU devices), and ``default`` uses every GPU when
    there are several.  A CPU counts as one logical device unless it was split with
    ``tf.config.set_logical_device_configuration`` (or ``XLA_FLAGS=
    --xla_force_host_platform_device_count=N`` under JAX), so ``mirrored`` on a CPU-only
    machine has one replica, which uses every core through the ops' thread pools.
    """
    if name == "default":
        if on_tensorflow():
            return tf.distribute.get_strategy()
        if keras.backend.backend() == "jax" and len(_jax_devices(gpus_only=True)) > 1:
            return JaxDataParallel(_jax_devices(gpus_only=True))
        return SingleDevice()
    if name == "mirrored" and keras.backend.backend() == "jax":
        return JaxDataParallel(_jax_devices(gpus_only=False))
    if not on_tensorflow():
        raise ValueError(f"--strategy {name} needs the TensorFlow backend (tf.distribute)"
                         + (" or JAX (mirrored)" if name == "mirrored" else ""))
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multiworker":  # reads TF_CONFIG
        if not json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster"):
            raise ValueError("--strategy multiworker needs TF_CONFIG with a cluster and this "
                             "process's task, e.g. TF_CONFIG='{\"cluster\": {\"worker\": "
                             "[\"host1:port\", \"host2:port\"]}, \"task\": {\"type\": "
                             "\"worker\", \"index\": 0}}'")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}; use default, mirrored or multiworker")


def _num_workers(strategy):
    return int(getattr(strategy.extended, "_num_workers", 1)) if on_tensorflow() else 1


def _is_chief(strategy):
    """Whether this process writes the outputs: under multi-worker training the chief task, else
    worker 0 of a cluster without a chief (``TF_CONFIG``, as ``tf.distribute`` decides); always
    true for a single process, even one with a leftover ``TF_CONFIG`` in its environment."""
    if _num_workers(strategy) > 1:
        return bool(strategy.extended.should_checkpoint)
    return True


def _broadcast_from_chief(strategy, arrays):
    """``arrays`` as the first replica (the chief's) has them, on every worker.

    One collective sum in which every replica but the first contributes zeros; the
    values come back exactly (x + 0 == x).  Everything travels as float64 (exact for
    float32 and for integers below 2**53).
    """
    if _num_workers(strategy) <= 1:
        return arrays
    dtypes = [np.asarray(a).dtype for a in arrays]
    tensors = [tf.constant(np.asarray(a, np.float64)) for a in arrays]  # one dtype per pack

    @tf.function
    def send():
        context = tf.distribute.get_replica_context()
        first = tf.equal(context.replica_id_in_sync_group, 0)
        return context.all_reduce("SUM", [tf.where(first, t, tf.zeros_like(t)) for t in tensors])

    received = strategy.run(send)
    return [np.asarray(strategy.experimental_local_results(r)[0]).astype(d)
            for r, d in zip(received, dtypes)]


class ResumableCheckpoint(keras.callbacks.Callback):
    """Saves weights, optimiser variables, the global step and the training seconds so far
    (earlier, interrupted runs included) to ``state.npz`` every ``every`` steps and at the
    run's last step (``total``).  Only the chief writes; every worker restores the chief's."""

    def __init__(self, folder, every, seconds_before=0.0, chief=True, total=None):
        super().__init__()
        self.path = Path(folder) / "state.npz"
        self.every = max(int(every), 1)
        self.seconds_before = float(seconds_before)
        self.chief = chief
        self.total = total
        self.started = time.time()

    def seconds(self):
        """Training seconds of this run and of the runs it resumes."""
        return self.seconds_before + time.time() - self.started

    def on_train_batch_end(self, batch, logs=None):
        step = _step(self.model)
        if step % self.every == 0 or step == self.total:
            self.save(step)

    def save(self, step):
        if not self.chief:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"w{i}": w for i, w in enumerate(self.model.get_weights())}
        arrays.update({f"o{i}": keras.ops.convert_to_numpy(v)
                       for i, v in enumerate(self.model.optimizer.variables)})
        write_atomically(self.path, lambda staged: np.savez(
            staged, step=step, seconds=self.seconds(), **arrays))

    @staticmethod
    def restore(model, folder, strategy=None):
        """Loads ``state.npz`` into ``model`` and its optimiser; returns ``(step, seconds)``
        (0 if none).  Under multi-worker training the chief's backup goes to every worker."""
        path = Path(folder) / "state.npz"
        optimizer = model.optimizer
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        n_weights, n_opt = len(model.get_weights()), len(optimizer.variables)
        step, seconds, arrays = 0, 0.0, None
        if path.exists():
            with np.load(path) as state:
                step = int(state["step"])
                seconds = float(state["seconds"]) if "seconds" in state.files else 0.0
                arrays = ([state[f"w{i}"] for i in range(n_weights)]
                          + [state[f"o{i}"] for i in range(n_opt)])
        if strategy is not None and _num_workers(strategy) > 1:
            step, seconds = (int(v) if i == 0 else float(v) for i, v in enumerate(
                _broadcast_from_chief(strategy, [np.float64(step), np.float64(seconds)])))
            if step:
                if arrays is None:  # a worker without the backup: receive the chief's
                    arrays = (model.get_weights()
                              + [keras.ops.convert_to_numpy(v) for v in optimizer.variables])
                arrays = _broadcast_from_chief(strategy, arrays)
        if step and arrays is not None:
            model.set_weights(arrays[:n_weights])
            for variable, value in zip(optimizer.variables, arrays[n_weights:]):
                variable.assign(value)
        return step, seconds


class StopAt(keras.callbacks.Callback):
    """Ends training at global step ``total``, inside an epoch if need be (a last, shorter
    epoch still ends with ``on_epoch_end``: validation, checkpoints, TensorBoard)."""

    def __init__(self, total):
        super().__init__()
        self.total = int(total)

    def on_train_batch_end(self, batch, logs=None):
        if _step(self.model) >= self.total:
            self.model.stop_training = True


class EpochProgress(keras.callbacks.ProgbarLogger):
    """Keras' progress bar with each epoch's real length: the last epoch of ``--steps N`` is
    shorter when N is not a multiple of the epoch (``fit`` would show the full epoch)."""

    def __init__(self, total, steps_per_epoch):
        super().__init__()
        self.total, self.steps_per_epoch = int(total), int(steps_per_epoch)

    def on_epoch_begin(self, epoch, logs=None):
        end = min((epoch + 1) * self.steps_per_epoch, self.total)
        self.target = max(end - _step(self.model), 1)
        super().on_epoch_begin(epoch, logs)


class Throughput(keras.callbacks.Callback):
    """Training patches per second, timed from the end of the first step of each ``fit``
    (so tracing and the pipeline's warm-up are left out) to the end of the last."""

    def __init__(self, global_batch):
        super().__init__()
        self.global_batch = global_batch
        self.seconds, self.steps, self._t = 0.0, 0, None

    def on_train_begin(self, logs=None):
        self._t, self._first = None, True

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if self._t is not None:
            self.seconds += now - self._t
            self.steps += 1
        self._t = now

    def on_epoch_end(self, epoch, logs=None):
        self._t = None  # validation and saving are not training time

    def on_epoch_begin(self, epoch, logs=None):
        self._t = None

    def result(self):
        rate = self.steps * self.global_batch / self.seconds if self.seconds else None
        return {"patches_per_second": rate and round(rate, 2), "timed_steps": self.steps}


class Validation(keras.callbacks.Callback):
    """Whole-image validation under SPEC §4 at the end of every epoch.

    Adds ``val_psnr``/``val_ssim`` (mean over levels and images), per-level
    values, ``input_psnr``/``input_ssim`` and ``learning_rate`` to the epoch
    logs (so checkpointing and TensorBoard see them), and writes scalars and
    degraded | restored | clean images to ``logdir``.  Under multi-worker training
    the chief validates and sends its numbers to the other workers.
    """

    def __init__(self, pairs_by_level, task, logdir, images=3, strategy=None, chief=True):
        super().__init__()
        self.pairs_by_level = pairs_by_level
        self.task = task
        self.chief = chief
        self.strategy = strategy
        self.writer = (tf.summary.create_file_writer(str(logdir))
                       if on_tensorflow() and chief else None)
        self.images = images
        self.last = {}
        self.input_metrics = {
            level: mean_scores([score(input_image(d, c, task, level), c, task, level)
                                for _, d, c in pairs])
            if chief else {"psnr": 0.0, "ssim": 0.0}
            for level, pairs in pairs_by_level.items()}

    def restore(self, degraded):
        y = self.model(degraded[None].astype(np.float32), training=False)
        y = y["y"] if isinstance(y, dict) else y
        return keras.ops.convert_to_numpy(y)[0].astype(np.float32)

    def evaluate(self):
        results = {}
        for level, pairs in self.pairs_by_level.items():
            restored = [(name, self.restore(d), d, c) for name, d, c in pairs]
            results[level] = (mean_scores([score(r, c, self.task, level)
                                     for _, r, _, c in restored]), restored)
        return results

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        if self.chief:
            results = self.evaluate()
        else:  # the chief's numbers arrive below
            results = {level: ({"psnr": 0.0, "ssim": 0.0}, []) for level in self.pairs_by_level}
        metrics = {"val_psnr": mean_scores([m for m, _ in results.values()])["psnr"],
                   "val_ssim": mean_scores([m for m, _ in results.values()])["ssim"],
                   "input_psnr": mean_scores(list(self.input_metrics.values()))["psnr"],
                   "input_ssim": mean_scores(list(self.input_metrics.values()))["ssim"],
                   "learning_rate": float(keras.ops.convert_to_numpy(
                       self.model.optimizer.learning_rate))}
        if len(results) > 1:
            for level, (m, _) in results.items():
                metrics[f"val_psnr_{get_task(self.task).format_level(level)}"] = m["psnr"]
        if self.strategy is not None and _num_workers(self.strategy) > 1:
            values = _broadcast_from_chief(self.strategy, [np.array(list(metrics.values()))])[0]
            metrics = {k: float(v) for k, v in zip(metrics, values)}
        logs.update(metrics)
        self.last = metrics
        if self.writer is None:  # no TensorFlow, or not the chief: no TensorBoard here
            return
        with self.writer.as_default(step=_step(self.model)):
            for key, value in metrics.items():
                tf.summary.scalar(key, value)
            for level, (_, restored) in results.items():
                for name, r, d, c in restored[: self.images]:
                    task = get_task(self.task)
                    tf.summary.image(f"{name}_{task.level_name}{task.format_level(level)}"
                                     " (degraded | restored | clean)", _panel(d, r, c)[None])
        self.writer.flush()


def _panel(degraded, restored, clean):
    """Side by side, the degraded image enlarged (nearest) to the clean size if smaller."""
    factor = clean.shape[0] // degraded.shape[0]
    if factor > 1:
        degraded = np.repeat(np.repeat(degraded, factor, 0), factor, 1)
    h, w = clean.shape[:2]
    panel = np.concatenate([degraded[:h, :w], restored, clean], axis=1)
    panel = np.clip(panel, 0, 1)  # shown as an image; scored unclipped
    return panel.astype(np.float32)


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


def build_model(config):
    """The model a run starts from: built, and started as the identity if
    ``identity_start`` and it is residual (:mod:`zoo.models.identity`)."""
    model = _build_plain(config)
    if config.identity_start and is_residual(model):
        start_as_identity(model)
    return model


def _build_plain(config):
    """The model; under ``mixed_precision`` it computes in float16 (GPU) or bfloat16 (CPU)
    with float32 outputs, and the global dtype policy is left as it was."""
    if not config.mixed_precision:
        return models.build(config.model, **config.overrides)
    previous = keras.mixed_precision.global_policy()
    gpu = bool(_gpus())
    keras.mixed_precision.set_global_policy("mixed_float16" if gpu else "mixed_bfloat16")
    try:
        model = models.build(config.model, **config.overrides)
        outputs = keras.tree.map_structure(
            lambda t: keras.layers.Activation("linear", dtype="float32")(t), model.output)
        return keras.Model(model.inputs, outputs, name=model.name)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _symbolic_batch(data_spec, batch):
    """KerasTensors shaped like one replica's batch, to build metrics and losses without data."""
    return keras.tree.map_structure(
        lambda spec: keras.KerasTensor((batch, *spec.shape[1:]),
                                       dtype=keras.backend.standardize_dtype(spec.dtype)),
        data_spec)


def _build_without_data(model, strategy, data_spec, batch):
    """Builds the model's metrics, losses and optimiser in ``strategy``'s scope.

    Keras' ``fit`` otherwise builds them from the first batch, which it takes from the
    training iterator (a batch no step sees) and, under ``MultiWorkerMirroredStrategy``,
    all-reduces as a nest, which fails ("Attempt to convert a value (PerReplica...) to a
    Tensor").  Built here on every worker, in the same order, nothing is consumed.
    """
    with strategy.scope():
        model._symbolic_build(data_batch=_symbolic_batch(data_spec, batch))
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
    if on_tensorflow() and getattr(model, "_distribute_strategy", None) is not None:
        model._maybe_symbolic_build = lambda *args, **kwargs: None  # built already


class _StepPatches(keras.utils.PyDataset):
    """``base`` (a :class:`NumpyPatches`) from epoch ``epoch``, batch ``offset`` on: batch ``i``
    of epoch ``e`` is the same whether a run got there in one go or resumed on the way."""

    def __init__(self, base, epoch=0, offset=0):
        super().__init__()
        self.base, self.epoch, self.offset = base, epoch, offset

    def __len__(self):
        return len(self.base) - self.offset

    def on_epoch_end(self):
        self.epoch, self.offset = self.epoch + 1, 0

    def __getitem__(self, index):
        self.base.epoch = self.epoch
        return self.base[self.offset + index]


@contextlib.contextmanager
def _multi_worker_logs(workers):
    """Keras 3 (up to 3.15 at least) averages each replica's step logs under multi-worker
    training with ``strategy.reduce("MEAN", v, axis=0)``, which fails on the scalar logs
    (loss, metrics: "Invalid reduction dimension 0 for input with 0 dimensions").  While
    training, scalars are averaged across replicas with ``axis=None`` instead."""
    if workers <= 1:
        yield
        return
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean") or not tf_trainer._collective_all_reduce_multi_worker(
                strategy):
            return original(values, strategy, reduction)

        def mean(v):
            if not tf_trainer._is_per_replica_instance(v):
                return v
            rank = strategy.experimental_local_results(v)[0].shape.rank
            return strategy.reduce("MEAN", v, axis=0 if rank else None)

        return keras.tree.map_structure(mean, values)

    tf_trainer.reduce_per_replica = reduce_per_replica
    try:
        yield
    finally:
        tf_trainer.reduce_per_replica = original


def _worker_folder(config, chief, task_id):
    """The chief writes to ``config.out``; other workers to a temporary folder they delete at
    the end (as Keras' ``BackupAndRestore`` does), so that only the chief's folder has outputs."""
    if chief:
        out = Path(config.out)
        out.mkdir(parents=True, exist_ok=True)
        return out, None
    tmp = Path(tempfile.mkdtemp(prefix=f"zoo-train-worker{task_id}-"))
    return tmp, tmp


def train(config=None, **kwargs):
    """Trains ``config.model`` (or the fields given as keywords) and returns the final ``run.json``.

    ``--steps N`` runs exactly N steps (the last epoch is shorter if N is not a multiple of
    the epoch) and the learning-rate schedule ends at the recipe's final rate at step N.
    The model's initial weights and the data follow ``config.seed``, and the data of step s
    do not depend on whether the run was interrupted before s, so a resumed run ends with
    the weights of an uninterrupted one (to float tolerance).
    Under ``strategy="multiworker"`` every worker runs this with its ``TF_CONFIG``; the
    chief writes the outputs, validates and sends its backup and metrics to the others.
    """
    config = dataclasses.replace(config or TrainConfig(), **kwargs)
    if config.data_path is None:
        config.data_path = "tf" if on_tensorflow() else "numpy"
    if config.data_path not in ("tf", "numpy"):
        raise ValueError(f"data_path must be 'tf' or 'numpy', got {config.data_path!r}")
    info = models.info(config.model)
    levels = _check(config, info)
    recipe = get_recipe(config.recipe, **config.recipe_overrides)
    mode = input_mode(info, config.task)
    upsampling = info.upsampling if config.task == "sr" and info.upsampling else "interpolated"

    strategy = make_strategy(config.strategy)
    replicas = strategy.num_replicas_in_sync
    if recipe.batch_size % replicas:
        raise ValueError(f"the global batch {recipe.batch_size} does not split evenly over "
                         f"{replicas} replicas; use a multiple of {replicas}")
    workers = _num_workers(strategy)
    chief = _is_chief(strategy)
    task_id = (strategy.cluster_resolver.task_id
               if workers > 1 and strategy.cluster_resolver else 0)
    out, scratch = _worker_folder(config, chief, task_id)
    try:
        with strategy.scope(), _multi_worker_logs(workers):
            return _train(config, recipe, info, levels, mode, upsampling, strategy, replicas,
                          workers, chief, out)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _train(config, recipe, info, levels, mode, upsampling, strategy, replicas, workers, chief,
           out):
    keras.utils.set_random_seed(config.seed)
    total = recipe.steps
    model = build_model(config)
    multi = isinstance(model.output, dict)
    loss_weights = multi_supervised_loss_weights(model.output) if multi else None
    model.compile(optimizer=make_optimizer(recipe, total),
                  loss={k: "mse" for k in loss_weights} if multi else "mse",
                  loss_weights=loss_weights,
                  metrics={"y": [PSNRMetric()]} if multi else [PSNRMetric()])

    # Data: patches for training, whole images for validation.
    train_data = config.train or demo_images(mode, split="train")
    val_data = config.val or demo_images(mode, split="val")
    tf_strategy = on_tensorflow() and tf.distribute.has_strategy()
    per_replica = recipe.batch_size // replicas if tf_strategy else recipe.batch_size
    local_replicas = replicas // workers if tf_strategy else 1
    data_kwargs = dict(task=config.task, levels=levels, patch_size=recipe.patch_size, mode=mode,
                       upsampling=upsampling)
    if config.data_path == "tf":
        def pipeline(pipeline_id=0):
            dataset = training_dataset(train_data, patches=recipe.patches,
                                       stride=recipe.stride or None, batch_size=per_replica,
                                       seed=config.seed + 7919 * pipeline_id, **data_kwargs)
            if multi:
                dataset = dataset.map(lambda x, y: (x, {k: y for k in loss_weights}))
            return dataset

        # Built here so that bad data fail before any training.  Each fit takes a fresh
        # pipeline: a second iterator over the same dataset would be shuffled differently
        # (tf.data reshuffles each iteration), and the data of a step would then depend on
        # where the run was interrupted.
        unused = [pipeline()]
        data_spec = unused[0].element_spec

        def fresh(pipeline_id):
            return unused.pop() if pipeline_id == 0 and unused else pipeline(pipeline_id)

        def dataset_from(step):
            """The training batches from global step ``step`` on (each worker's own stream)."""
            if not tf_strategy:
                return fresh(0).skip(step) if step else fresh(0)

            def per_worker(context):
                ds = fresh(context.input_pipeline_id)
                return ds.skip(step * local_replicas) if step else ds

            return strategy.distribute_datasets_from_function(per_worker)
    else:  # random crops in numpy; multi-supervised targets are repeated by Keras' loss dict
        if multi:
            raise ValueError("the numpy data path trains single-output models; use the tf.data "
                             "path (TensorFlow backend) for multi-supervised MemNet")
        data_kwargs.update(batch_size=recipe.batch_size, steps_per_epoch=recipe.steps_per_epoch,
                           seed=config.seed)
        probe = NumpyPatches(train_data, **data_kwargs)
        x, y = probe[0]
        data_spec = (keras.KerasTensor(x.shape, "float32"), keras.KerasTensor(y.shape, "float32"))

        def dataset_from(step):
            epoch, offset = divmod(step, recipe.steps_per_epoch)
            return _StepPatches(probe, epoch=epoch, offset=offset)

    _build_without_data(model, strategy, data_spec, per_replica)
    start_step, seconds_before = ResumableCheckpoint.restore(
        model, out / "backup", strategy if workers > 1 else None)
    backup = ResumableCheckpoint(
        out / "backup", config.checkpoint_every or max(recipe.steps_per_epoch // 4, 1),
        seconds_before, chief=chief, total=total)

    pairs = {}
    for level in levels:
        triples = evaluation_pairs(val_data, config.task, level, mode=mode,
                                   sub_pixel=upsampling == "sub-pixel",
                                   seed=config.seed) if chief else []
        pairs[level] = triples[: config.val_limit or None]

    validation = Validation(pairs, config.task, out / "logs" / "validation_images",
                            config.tensorboard_images, strategy=strategy, chief=chief)
    throughput = Throughput(recipe.batch_size)
    callbacks = [validation, BestAndLast(out), backup, StopAt(total), throughput,
                 EpochProgress(total, recipe.steps_per_epoch)]
    if on_tensorflow():
        callbacks.append(keras.callbacks.TensorBoard(out / "logs", update_freq="epoch"))
    else:
        callbacks.append(keras.callbacks.CSVLogger(str(out / "history.csv"), append=True))
    run = {"config": dataclasses.asdict(config), "recipe": dataclasses.asdict(recipe),
           "versions": _versions(), "resumed_from_step": start_step,
           "replicas": replicas, "workers": workers, "chief": chief,
           "params": model.count_params()}
    if chief:
        write_text_atomically(out / "run.json", json.dumps(run, indent=2))

    spe = recipe.steps_per_epoch
    epochs = -(-total // spe)
    verbose = 1 if sys.stdout.isatty() else 2
    history = {}
    first_epoch, done_in_epoch = divmod(start_step, spe)

    def fit(step, epochs, initial_epoch, steps_per_epoch):
        h = model.fit(dataset_from(step), epochs=epochs, initial_epoch=initial_epoch,
                      steps_per_epoch=steps_per_epoch, callbacks=callbacks, verbose=verbose,
                      shuffle=False)
        for key, values in h.history.items():
            history.setdefault(key, []).extend(values)

    if start_step < total and done_in_epoch:  # finish the interrupted epoch first
        fit(start_step, first_epoch + 1, first_epoch, spe - done_in_epoch)
        first_epoch += 1
    if start_step < total and first_epoch < epochs:
        fit(first_epoch * spe, epochs, first_epoch, spe)

    if not validation.last:  # nothing was left to train: measure the restored weights
        validation.set_model(model)
        validation.on_epoch_end(first_epoch)
    final = dict(validation.last)
    final["loss"] = float(history["loss"][-1]) if history.get("loss") else None
    weights = model.get_weights()
    run.update({"final": final, "val_psnr": final.get("val_psnr"),
                "input_psnr": final.get("input_psnr"),
                "steps": _step(model),
                "wall_seconds": round(backup.seconds(), 1),
                "throughput": throughput.result(),
                "weights_sha256": hashlib.sha256(
                    b"".join(np.ascontiguousarray(w).tobytes() for w in weights)).hexdigest(),
                "history": {k: [float(v) for v in vs] for k, vs in history.items()}})
    if chief:
        write_text_atomically(out / "run.json", json.dumps(run, indent=2))
    return run


class BestAndLast(keras.callbacks.Callback):
    """``last.keras`` after every epoch and ``best.keras`` at a new best ``val_psnr``; atomic.

    Every worker saves (a non-chief worker into its temporary folder), so that any
    collective reads of distributed variables during saving match across workers."""

    def __init__(self, folder):
        super().__init__()
        self.folder = Path(folder)
        self.best = -np.inf
        meta = self.folder / "best.json"
        if meta.exists():
            self.best = json.loads(meta.read_text())["val_psnr"]

    def on_epoch_end(self, epoch, logs=None):
        write_atomically(self.folder / "last.keras", self.model.save)
        write_text_atomically(self.folder / "last.json", json.dumps({"epoch": epoch + 1}))
        psnr = (logs or {}).get("val_psnr")
        if psnr is not None and psnr > self.best:
            self.best = psnr
            write_atomically(self.folder / "best.keras", self.model.save)
            write_text_atomically(self.folder / "best.json",
                              json.dumps({"val_psnr": psnr, "epoch": epoch + 1}))
