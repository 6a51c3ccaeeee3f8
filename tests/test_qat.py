"""Quantization-aware fine-tuning (zoo.export.qat): the fake-quantized Keras model predicts the int8
LiteRT file, converts to the post-training graph's ops, and fine-tuning brings it closer to the
float model."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo.export import qat
from zoo.export import export
from .configs import small
from .test_export import _images, _randomised

CASES = {"xdncnn": ("denoise", 25, "gray"), "xsrcnn_f": ("sr", 3, "Y")}
# one block keeps xDnCNN's structure (batch norm, conv and xUnit between the outer convs) and
# makes each export a third faster (50 s against 75 s for the pair; most of it is TF tracing
# the fine-tuning step)
CONFIGS = {"xdncnn": dict(small("xdncnn"), blocks=1)}


def _int8(name, tmp_path, steps, input_shape=None):
    task, level, colour = CASES[name]
    keras.utils.set_random_seed(0)
    model = _randomised(zoo.build(name, **CONFIGS.get(name, small(name))))
    return export(model, tmp_path / f"{name}_{steps}.tflite", mode="int8", task=task, level=level,
                  calibration_data=_images(colour, "train", 96, count=3), calibration_samples=16,
                  val_data=_images(colour, "val", 64), latency_sizes=(), qat_steps=steps,
                  input_shape=input_shape)


@pytest.mark.parametrize("name, input_shape", [
    ("xdncnn", None),
    # fixed size: xUnits as grouped convs on 4x4 blocks (the default run checks the simulation
    # of blocks in test_simulated_xunits_predict_the_int8_file_split_whole_or_blocks)
    pytest.param("xdncnn", (48, 64), marks=pytest.mark.slow),
    pytest.param("xsrcnn_f", None, marks=pytest.mark.slow)])
def test_fine_tuned_int8_is_predicted_by_keras_and_keeps_the_graph(name, input_shape, tmp_path):
    post = _int8(name, tmp_path, 0, input_shape)
    aware = _int8(name, tmp_path, 30, input_shape)
    # the same int8 ops (so the same latency), no float island
    assert ("SPACE_TO_DEPTH" in aware["graph"]["ops"]) == (input_shape is not None)
    assert aware["graph"]["ops"] == post["graph"]["ops"]
    assert aware["graph"]["float_ops"] == {}
    assert aware["quantization_aware"]["steps"] == 30
    fake = aware["numerics"]["fake_quant"]
    float_vs_lite = aware["numerics"]["worst_psnr_tflite_vs_keras"]
    # the stated tolerance: the simulation is within 40 dB PSNR of the int8 file (integer
    # rounding of requantization and of EXP's table is all that separates them), and closer
    # to it than the float model is (error RMS at most 0.7x; measured 49.9 against 46.3 dB)
    assert fake["worst_psnr_vs_tflite"] >= 40, fake
    assert fake["worst_psnr_vs_tflite"] >= float_vs_lite + 3, (fake, float_vs_lite)
    # it predicts the file's score on the clean image
    assert abs(fake["psnr"] - aware["numerics"]["tflite"]["psnr"]) <= 0.1, fake


def test_kernels_round_per_output_channel_on_255_symmetric_levels(rng):
    kernel = rng.normal(0, 1, (3, 3, 4, 5)).astype("float32") * np.arange(1, 6, dtype="float32")
    rounded = keras.ops.convert_to_numpy(qat.quantize_kernel(kernel))
    steps = np.abs(kernel).max(axis=(0, 1, 2)) / 127
    levels = rounded / steps
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)
    assert np.abs(levels).max() <= 127 + 1e-3
    np.testing.assert_array_less(np.abs(rounded - kernel),
                                 np.broadcast_to(steps / 2 + 1e-6, kernel.shape))


def test_ranges_cover_what_calibration_saw_and_zero(rng):
    inputs = keras.Input((None, None, 1))
    model = keras.Model(inputs, qat.FakeQuant(name="q")(inputs))
    qat.calibrate(model, [rng.uniform(0.2, 0.7, (1, 8, 8, 1)).astype("float32") for _ in range(3)])
    quant = model.get_layer("q")
    assert float(quant.lo) == 0.0 and 0.69 < float(quant.hi) <= 0.7
    x = rng.uniform(-1, 2, (1, 8, 8, 1)).astype("float32")
    y = keras.ops.convert_to_numpy(model(x))
    assert y.min() >= 0.0 and y.max() <= float(quant.hi) + 1e-6
    assert len(np.unique(y)) <= 256


def test_unknown_layers_are_named(rng):
    inputs = keras.Input((None, None, 1))
    model = keras.Model(inputs, keras.layers.LeakyReLU()(keras.layers.Conv2D(2, 3)(inputs)))
    with pytest.raises(ValueError, match="LeakyReLU"):
        qat.quantization_model(model)


def test_qat_is_for_int8_only(tmp_path):
    with pytest.raises(ValueError, match="int8"):
        export(zoo.build("xsrcnn_f"), tmp_path / "x.tflite", mode="float16", qat_steps=5)


def test_fine_tuning_decays_its_step_size_to_zero(rng):
    inputs = keras.Input((None, None, 1))
    teacher = keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same")(inputs))
    simulated = qat.calibrate(qat.quantization_model(teacher),
                              [rng.uniform(0, 1, (1, 8, 8, 1)).astype("float32")])
    x = rng.uniform(0, 1, (4, 8, 8, 1)).astype("float32")
    data = tf.data.Dataset.from_tensors((x, x)).repeat()
    frozen = keras.layers.Conv2D(1, 1)   # a frozen part of the teacher stays frozen
    teacher = keras.Model(inputs, frozen(teacher(inputs)))
    frozen.trainable = False
    history = qat.fine_tune(simulated, teacher, data, steps=6, learning_rate=1e-3, verbose=0)
    assert teacher.trainable and teacher.layers[1].trainable and not frozen.trainable
    optimizer = history.model.optimizer
    assert int(optimizer.iterations) == 6
    assert float(optimizer.learning_rate) < 1e-9   # cosine(pi) = -1: 0 at the end
    # the step size the optimizer reports at earlier steps
    optimizer.iterations.assign(0)
    assert float(optimizer.learning_rate) == pytest.approx(1e-3)
    optimizer.iterations.assign(3)
    assert float(optimizer.learning_rate) == pytest.approx(5e-4)   # half way down the cosine


def test_fine_tuning_reproduces_the_teacher_in_inference_mode(rng):
    """The loss of the first step is the simulation's (training mode) squared difference from
    the teacher's inference output; a teacher run in training mode (here: its dropout) would
    give another."""
    inputs = keras.Input((None, None, 1))
    conv = keras.layers.Conv2D(1, 3, padding="same")
    teacher = keras.Model(inputs, keras.layers.Dropout(0.5)(conv(inputs)))
    student = keras.Model(inputs, conv(inputs))
    simulated = qat.calibrate(qat.quantization_model(student),
                              [rng.uniform(0, 1, (1, 8, 8, 1)).astype("float32")])
    x = rng.uniform(0, 1, (4, 8, 8, 1)).astype("float32")
    array = keras.ops.convert_to_numpy
    expected = float(((array(simulated(x, training=True)) - array(teacher(x))) ** 2).mean())
    wrong = float(((array(simulated(x, training=True)) - array(teacher(x, training=True))) ** 2
                   ).mean())
    history = qat.fine_tune(simulated, teacher, tf.data.Dataset.from_tensors((x, x)).repeat(),
                            steps=1, learning_rate=1e-3, verbose=0)
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-2)
    assert abs(wrong - expected) > 0.1 * expected


def test_fine_tuning_learns_ranges_that_skip_rare_extremes(rng):
    """A calibration outlier (20 among values in [0, 1]) spreads a min/max range's 256 levels
    over [0, 20]; fine-tuning learns a range near the values that occur, which inference and
    the converter then read from ``lo`` and ``hi``."""
    inputs = keras.Input((None, None, 1))
    inner = keras.layers.Conv2D(1, 1, kernel_initializer="ones")
    teacher = keras.Model(inputs, keras.layers.Conv2D(1, 1, kernel_initializer="ones")(
        inner(inputs)))
    outlier = rng.uniform(0, 1, (1, 8, 8, 1)).astype("float32")
    outlier[0, 0, 0, 0] = 20.0
    simulated = qat.calibrate(qat.quantization_model(teacher), [outlier])
    quant = simulated.get_layer(f"q_{inner.name}")   # what the inner conv's output rounds to
    assert float(quant.hi) == pytest.approx(20.0)
    x = rng.uniform(0, 1, (64, 8, 8, 1)).astype("float32")
    error = lambda: float(np.mean((keras.ops.convert_to_numpy(quant(x)) - x) ** 2))
    before = error()
    qat.fine_tune(simulated, teacher, tf.data.Dataset.from_tensors((x, x)).repeat(), steps=200,
                  learning_rate=1e-3, verbose=0)
    # measured: 2.3 (from 20)
    assert float(quant.lo) == 0.0 and 1.0 <= float(quant.hi) < 4.0, float(quant.hi)
    assert float(quant.log_lo) == float(quant.log_hi) == 0.0   # moved into lo and hi
    assert error() < before / 20, (error(), before)


def test_a_range_learns_from_the_rounding_error_inside_it_and_clipping_outside(rng):
    """LSQ's gradient: d fq(x) / d hi = (fq(x) - x) / (hi - lo) inside the range (TensorFlow's
    FakeQuant gives none there), 1 for a value clipped at hi; the ends learn in log space."""
    quant = qat.FakeQuant()
    quant.build((None,))
    quant.lo.assign(-1.0)
    quant.hi.assign(2.0)   # 255 steps of 3/255: zero is on the grid, nothing is nudged
    inside = rng.uniform(-0.9, 1.9, 500).astype("float32")
    x = tf.constant(np.concatenate([inside, [2.5, 3.0]]).astype("float32"))
    with tf.GradientTape() as tape:
        y = quant(x, training=True)
        total = tf.reduce_sum(y)
    d_lo, d_hi = tape.gradient(total, [quant.log_lo, quant.log_hi])
    rounded = tf.quantization.fake_quant_with_min_max_vars(x, -1.0, 2.0).numpy()
    np.testing.assert_array_equal(y.numpy(), rounded)   # the added term is zero in value
    error = float(np.sum(rounded[:500] - inside)) / 3.0
    assert abs(error) > 1e-3     # a sum of rounding errors that does not cancel by chance
    # d/d log_hi = d/d hi * RANGE_RATE * hi; two values clipped at hi add 1 each
    assert float(d_hi) == pytest.approx(qat.RANGE_RATE * 2.0 * (error + 2), rel=1e-3)
    assert float(d_lo) == pytest.approx(qat.RANGE_RATE * -1.0 * -error, rel=1e-3)


def test_image_ranges_keep_zero_to_one_and_stay_fixed(rng):
    """The model's input and output keep [0, 1] in range (a bright test image is not clipped)
    and do not learn; the ranges in between do."""
    inputs = keras.Input((None, None, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same")(inputs))
    simulated = qat.calibrate(qat.quantization_model(model),
                              [rng.uniform(0.2, 0.6, (1, 8, 8, 1)).astype("float32")])
    quants = qat.fake_quants(simulated)
    assert len(quants) == 2
    for quant in quants:
        assert float(quant.lo) <= 0.0 and float(quant.hi) >= 1.0
        assert not quant.trainable_weights
    inner = qat.quantization_model(keras.Model(inputs, keras.layers.ReLU()(
        keras.layers.Conv2D(1, 3, padding="same")(model.output))))
    assert sum(bool(quant.trainable_weights) for quant in qat.fake_quants(inner)) == 1


@pytest.mark.slow  # four int8 conversions: about 20 s a form
@pytest.mark.parametrize("split, block", [(5, None), (None, 4)])
def test_the_converter_takes_every_range_from_the_fake_quants(split, block, rng):
    """The conversion of a quantization model calibrates on one input only (export time): so
    its file must not depend on the calibration data at all, split or on blocks (fixed size)."""
    from zoo.export import convert, norms_as_convs, xunit_options
    keras.utils.set_random_seed(0)
    model = norms_as_convs(xunit_options(_randomised(zoo.build("xdncnn", **small("xdncnn"))),
                                         split=split, block=block, gate_clip=3.0,
                                         pointwise_norm=True))
    inputs = [rng.uniform(0, 1, (1, 32, 32, 1)).astype("float32") for _ in range(8)]
    simulated = qat.calibrate(qat.quantization_model(model), inputs)
    other = [x * 0.2 for x in inputs]  # data whose ranges differ from the calibrated ones
    shape = {"input_shape": (32, 32)} if block else {}
    assert convert(simulated, "int8", calibration=inputs, **shape)[0] == \
        convert(simulated, "int8", calibration=other, **shape)[0]
    assert convert(model, "int8", calibration=inputs, **shape)[0] != \
        convert(model, "int8", calibration=other, **shape)[0]   # a float model's file does


def test_simulation_predicts_an_int8_file_with_batch_norms_after_convs(rng):
    """DnCNN's conv -> BN -> ReLU: the file holds the conv with the batch norm folded in, so the
    simulation must round that folded kernel, with no rounding between conv and batch norm."""
    from zoo.export import LiteRT, convert, norms_as_convs
    keras.utils.set_random_seed(0)
    model = norms_as_convs(_randomised(zoo.build("dncnn_s", **small("dncnn_s"))))
    inputs = [rng.uniform(0, 1, (1, 32, 32, 1)).astype("float32") for _ in range(8)]
    simulated = qat.calibrate(qat.quantization_model(model), inputs)
    runner = LiteRT(convert(simulated, "int8", calibration=inputs)[0])
    x = rng.uniform(0, 1, (40, 36, 1)).astype("float32")
    error = np.sqrt(np.mean((runner(x) - keras.ops.convert_to_numpy(simulated(x[None]))[0]) ** 2))
    float_error = np.sqrt(np.mean((runner(x) - keras.ops.convert_to_numpy(model(x[None]))[0]) ** 2))
    # measured: 8.7e-4 against 3.6e-3 for the float model (a multiply and an add rounded after
    # each conv, as the batch norms were simulated before: 4.1e-3)
    assert error <= 0.002 and error < 0.4 * float_error, (error, float_error)


@pytest.mark.parametrize("split, block", [(5, None), (None, None), (None, 4)])
def test_simulated_xunits_predict_the_int8_file_split_whole_or_blocks(split, block, rng):
    """The whole 9x9 (``--xunit-split 0``) rounds its conv output once, on the clipped range,
    as does its grouped conv on 4x4 blocks (a fixed input size); the split form rounds each
    piece and partial sum.  Each simulation predicts its file."""
    from zoo.export import LiteRT, convert, norms_as_convs, xunit_options
    keras.utils.set_random_seed(0)
    model = norms_as_convs(xunit_options(_randomised(zoo.build("xsrcnn_f", **small("xsrcnn_f"))),
                                         split=split, block=block, gate_clip=3.0,
                                         pointwise_norm=True))
    size = (42, 37)    # not a multiple of the block: padded, then cropped
    inputs = [rng.uniform(0, 1, (1, *size, 1)).astype("float32") for _ in range(8)]
    simulated = qat.calibrate(qat.quantization_model(model), inputs)
    units = [layer for layer in simulated.layers if isinstance(layer, qat.QuantXUnit)]
    assert units and all(len(u.q_terms) == (4 if split else 0) for u in units)
    content, graph = convert(simulated, "int8", calibration=inputs,
                             input_shape=size if block else None)
    assert ("SPACE_TO_DEPTH" in graph.ops) == bool(block) and not graph.float_ops
    runner = LiteRT(content)
    x = rng.uniform(0, 1, (*size, 1)).astype("float32")
    predicted = keras.ops.convert_to_numpy(simulated(x[None]))[0]
    error = np.sqrt(np.mean((runner(x) - predicted) ** 2))
    float_error = np.sqrt(np.mean((runner(x) - keras.ops.convert_to_numpy(model(x[None]))[0]) ** 2))
    # measured (42x37): 8.9e-4 split, 1.0e-3 whole and blocks, against 3.6e-3 for the float model
    assert error <= 0.002 and error < 0.3 * float_error, (error, float_error)
