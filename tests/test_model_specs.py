"""Every builder against SPEC §1-3: parameter counts, depths, shapes, save/load."""

import numpy as np
import pytest
import keras

import zoo
from zoo.models.memnet import depth as memnet_depth

from .configs import small

# (registry name, overrides, convention, count) — SPEC §1-3.
SPEC_COUNTS = [
    ("xdncnn", {}, "paper", 303_616),
    ("xdncnn_rgb", {}, "paper", 305_920),
    ("dncnn_s", {}, "paper", 556_032),
    ("dncnn_rgb", {}, "paper", 558_336),
    ("dncnn_b", {}, "paper", 667_008),  # SPEC §5: 20 layers
    ("dncnn_3", {}, "kernels", 664_704),
    ("srcnn", {}, "paper", 57_184),
    ("xsrcnn_f", {}, "paper", 32_576),
    ("xsrcnn_c", {}, "paper", 44_092),
    ("srresnet", {}, "paper", 1_546_752),
    ("xsrresnet", {}, "paper", 1_155_968),
    ("memnet", {}, "kernels", 676_992),
    ("memnet", {"blocks": 4, "recursions": 6}, "kernels", 435_328),
    ("memnet", {"blocks": 6, "recursions": 8}, "kernels", 726_144),
    ("memnet", {"blocks": 10, "recursions": 10}, "kernels", 1_373_312),
    ("vdsr", {}, "kernels", 664_704),
    ("nlrn", {}, "kernels", 329_984),
]


@pytest.mark.parametrize("name,overrides,convention,count", SPEC_COUNTS,
                         ids=[f"{n}-{'-'.join(f'{k}{v}' for k, v in o.items())}" for n, o, _, _ in SPEC_COUNTS])
def test_parameter_count_matches_spec(name, overrides, convention, count):
    model = zoo.build(name, **overrides)
    assert zoo.count_params(model, convention) == count


def test_multi_supervised_memnet_adds_no_kernels():
    # The heads share one reconstruction conv (SPEC §2): same kernel count.
    assert zoo.count_params(zoo.build("memnet", multi_supervised=True), "kernels") == 676_992


def test_conventions_differ_where_they_should():
    model = zoo.build("xdncnn")
    paper, kernels, keras_count = (zoo.count_params(model, c) for c in ("paper", "kernels", "keras"))
    # 8 BN inside... : paper adds BN gamma/beta; Keras adds biases and moving statistics.
    assert kernels < paper < keras_count
    with pytest.raises(ValueError, match="convention"):
        zoo.count_params(model, "flops")


def _conv_calls(model, x):
    """Conv2D applications during one training-mode forward pass (the papers' 'depth').

    Training mode, because at inference MemNet's gate computes its 1x1 conv by parts.
    """
    calls = []
    original = keras.layers.Conv2D.call

    def spy(self, inputs):
        calls.append(self)
        return original(self, inputs)

    keras.layers.Conv2D.call = spy
    try:
        model(x, training=True)
    finally:
        keras.layers.Conv2D.call = original
    return calls


@pytest.mark.parametrize("blocks,recursions,expected", [(4, 6, 54), (6, 6, 80), (6, 8, 104), (10, 10, 212)])
def test_memnet_depth(blocks, recursions, expected):
    model = zoo.build("memnet", blocks=blocks, recursions=recursions, filters=8)
    calls = _conv_calls(model, np.zeros((1, 8, 8, 1), "float32"))
    assert len(calls) == expected == memnet_depth(blocks, recursions)


@pytest.mark.parametrize("name,depth", [("xdncnn", 9), ("dncnn_s", 17), ("dncnn_b", 20),
                                        ("dncnn_3", 20), ("vdsr", 20), ("srcnn", 3)])
def test_stated_depths(name, depth):
    model = zoo.build(name)
    channels = model.inputs[0].shape[-1]
    assert len(_conv_calls(model, np.zeros((1, 8, 8, channels), "float32"))) == depth


@pytest.mark.parametrize("name", zoo.list_models())
def test_forward_shape_on_odd_size(name):
    model = zoo.build(name, **small(name))
    entry = zoo.info(name)
    channels = model.inputs[0].shape[-1]
    y = model(np.random.default_rng(0).random((2, 37, 29, channels), dtype="float32"))
    if isinstance(y, dict):
        y = y["y"]
    assert tuple(y.shape) == (2, 37 * entry.scale, 29 * entry.scale, channels)
    assert np.isfinite(np.asarray(y)).all()


@pytest.mark.parametrize("name", zoo.list_models())
def test_keras_file_round_trip(name, tmp_path, rng):
    model = zoo.build(name, **small(name))
    # Move every weight off its initial value, BN statistics and zero-initialised g included.
    model.set_weights([w + rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in model.get_weights()])
    for w in model.weights:
        if "moving_variance" in w.path:
            w.assign(np.abs(w.numpy()) + 0.5)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = rng.random((1, 37, 29, model.inputs[0].shape[-1]), dtype="float32")
    expected, got = model(x), loaded(x)
    if isinstance(expected, dict):
        assert set(expected) == set(got)
        expected, got = expected["y"], got["y"]
    np.testing.assert_array_equal(np.asarray(expected), np.asarray(got))
