"""Export forms of the paper layers (zoo.export.layers): each computes its layer's function."""

import numpy as np
import pytest

from zoo.export.layers import ExportXUnit
from zoo.layers import XUnit


def _randomise(layer, rng, scale=0.5):
    """Random weights; BN moving variances kept positive."""
    layer.set_weights([rng.normal(0, scale, w.shape).astype("float32") for w in layer.get_weights()])
    for w in layer.weights:
        if "moving_variance" in w.path:
            w.assign(np.abs(w.numpy()) + 0.5)


# --- xUnit -----------------------------------------------------------------


def _assert_rewrite_is_exact(plain, fast, z, rng):
    """``fast`` (an export-time rewrite of the xUnit ``plain``) with ``plain``'s random weights
    gives ``plain``'s output, at inference and in training."""
    plain.build(z.shape)
    fast.build(z.shape)
    _randomise(plain, rng)
    for w in plain.weights:
        if "moving_variance" in w.path:
            w.assign(np.abs(w.numpy()) + 0.5)
    fast.set_weights(plain.get_weights())
    np.testing.assert_allclose(np.asarray(fast(z)), np.asarray(plain(z)), rtol=1e-5, atol=1e-6)
    # training: the batch norm after the rewritten conv sees the batch statistics, as in plain
    np.testing.assert_allclose(np.asarray(fast(z, training=True)),
                               np.asarray(plain(z, training=True)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kernel_size,split", [(9, 3), (9, 5), (9, 6), (9, 8), (9, 2), (9, 1), (5, 5), (7, 4), (5, 3)])
def test_split_depthwise_is_exact(rng, kernel_size, split):
    z = rng.normal(size=(2, 13, 10, 4)).astype("float32")
    _assert_rewrite_is_exact(XUnit(kernel_size), ExportXUnit(kernel_size, split=split), z, rng)
    with pytest.raises(ValueError, match="split must be a positive"):
        ExportXUnit(9, split=0)


@pytest.mark.parametrize("kernel_size,block,shape", [
    (9, 4, (2, 13, 10, 4)),   # the export's default; pads 13x10 to 16x12 blocks and crops
    (9, 4, (1, 16, 8, 3)),    # a multiple of the block: no pad, no crop
    (9, 3, (1, 11, 7, 2)),    # 5x5 blocks of 3x3 pixels
    (9, 9, (1, 9, 18, 2)),    # one block per kernel
    (5, 2, (1, 7, 9, 3)),
    (3, 5, (1, 6, 6, 2))])
def test_block_depthwise_is_exact(rng, kernel_size, block, shape):
    fast = ExportXUnit(kernel_size, block=block)
    _assert_rewrite_is_exact(XUnit(kernel_size), fast, rng.normal(size=shape).astype("float32"), rng)
    assert ExportXUnit.from_config(fast.get_config()).block == block


def test_block_and_split_are_checked():
    with pytest.raises(ValueError, match="pick one"):
        ExportXUnit(9, split=5, block=4)
    with pytest.raises(ValueError, match="at least 2"):
        ExportXUnit(9, block=1)


def test_gate_clip_changes_the_gate_only_below_exp_minus_bound_squared(rng):
    plain, clipped = XUnit(3), ExportXUnit(3, gate_clip=3.0)
    z = rng.normal(0, 2, size=(1, 12, 12, 4)).astype("float32")
    plain.build(z.shape)
    clipped.build(z.shape)
    _randomise(plain, rng, 2.0)
    clipped.set_weights(plain.get_weights())
    a, b = np.asarray(plain(z)), np.asarray(clipped(z))
    assert np.all(np.abs(a - b) <= np.exp(-9.0) * np.abs(z) + 1e-7)
    assert ExportXUnit.from_config(clipped.get_config()).gate_clip == 3.0


def test_a_saved_plain_xunit_loads_as_the_paper_layer_an_export_form_does_not():
    config = ExportXUnit(9).get_config()   # what files saved before the split carry: options unset
    assert type(XUnit.from_config(config)) is XUnit
    with pytest.raises(ValueError, match="ExportXUnit"):
        XUnit.from_config(ExportXUnit(9, split=5).get_config())
