"""Behaviour of the papers' layers: xUnit, MemNet's memory block, NLRN's non-local module."""

import numpy as np
import pytest
import keras

import zoo
from zoo.layers import GateUnit, NonLocal, RecursiveUnit, XUnit


def _randomise(layer, rng, scale=0.5):
    """Random weights; BN moving variances kept positive."""
    layer.set_weights([rng.normal(0, scale, w.shape).astype("float32") for w in layer.get_weights()])
    for w in layer.weights:
        if "moving_variance" in w.path:
            w.assign(np.abs(w.numpy()) + 0.5)


# --- xUnit -----------------------------------------------------------------

def test_xunit_gaussian_gate_never_amplifies(rng):
    layer = XUnit(9)
    z = rng.normal(0, 3, (2, 20, 20, 8)).astype("float32")
    layer.build(z.shape)
    _randomise(layer, rng, 2.0)
    for w in layer.weights:
        if "moving_variance" in w.path:
            w.assign(np.abs(w.numpy()) + 0.1)
    for training in (False, True):
        out = np.asarray(layer(z, training=training))
        assert np.all(np.abs(out) <= np.abs(z) + 1e-6)
        assert np.any(np.abs(out) < 0.99 * np.abs(z))  # the gate does act


def test_xunit_matches_its_equation(rng):
    layer = XUnit(3, pre_norm=False, post_norm=False)
    z = rng.normal(size=(1, 6, 5, 2)).astype("float32")
    layer.build(z.shape)
    _randomise(layer, rng)
    kernel, bias = layer.depthwise.get_weights()
    padded = np.pad(np.maximum(z, 0), ((0, 0), (1, 1), (1, 1), (0, 0)))
    d = np.zeros_like(z)
    for i in range(6):
        for j in range(5):
            d[0, i, j] = np.einsum("hwc,hwc->c", padded[0, i:i + 3, j:j + 3], kernel[..., 0]) + bias
    np.testing.assert_allclose(np.asarray(layer(z)), z * np.exp(-d ** 2), rtol=1e-5, atol=1e-6)


def test_xunit_parameter_overhead_is_k2_plus_4_per_channel():
    model = keras.Sequential([keras.Input((None, None, 64)), XUnit(9)])
    assert zoo.count_params(model, "paper") == (9 * 9 + 4) * 64


@pytest.mark.parametrize("design,flags", [
    ("BN+RL+CD+BN+GS", (True, True, True, "gaussian")),
    ("BN+RL+CD", (True, True, False, "linear")),
    ("RL+CD+GS", (False, True, False, "gaussian")),
    ("CD+BN+GS", (False, False, True, "gaussian")),
])
def test_xunit_designs_of_fig6(design, flags):
    layer = XUnit.from_design(design, kernel_size=5)
    assert (layer.pre_norm, layer.relu, layer.post_norm, layer.gate) == flags
    assert XUnit.from_config(layer.get_config()).get_config() == layer.get_config()


@pytest.mark.parametrize("design", ["BN+RL+GS", "GS+CD", "BN+BN+CD", "BN+RL+CD+XX"])
def test_xunit_bad_design_is_refused(design):
    with pytest.raises(ValueError, match="design"):
        XUnit.from_design(design)


# --- MemNet ----------------------------------------------------------------

def test_recursions_share_their_two_convs_and_only_those(rng):
    unit = RecursiveUnit(filters=8, recursions=4)
    unit.build((None, None, None, 8))
    calls = []
    for layer in (unit.conv1, unit.conv2) + tuple(l for pair in unit.norms for l in pair):
        original = layer.call
        layer.call = (lambda original, layer: lambda *a, **k: (calls.append(layer), original(*a, **k))[1])(original, layer)
    memories = unit(rng.normal(size=(1, 6, 6, 8)).astype("float32"))
    assert len(memories) == 4
    convs = [l for l in calls if isinstance(l, keras.layers.Conv2D)]
    norms = [l for l in calls if isinstance(l, keras.layers.BatchNormalization)]
    assert len(convs) == 8 and len({id(l) for l in convs}) == 2     # shared convs
    assert len(norms) == 8 and len({id(l) for l in norms}) == 8     # one BN per use
    kernels = [w for w in unit.weights if w.path.endswith("kernel")]
    assert len(kernels) == 2


def test_recursion_is_a_residual_chain(rng):
    unit = RecursiveUnit(filters=4, recursions=3)
    x = rng.normal(size=(1, 5, 5, 4)).astype("float32")
    unit.build(x.shape)
    _randomise(unit, rng, 0.2)
    memories = [np.asarray(m) for m in unit(x)]
    h = x
    for (norm1, norm2), got in zip(unit.norms, memories):
        y = unit.conv1(np.maximum(np.asarray(norm1(h)), 0))
        h = h + np.asarray(unit.conv2(np.maximum(np.asarray(norm2(y)), 0)))
        np.testing.assert_allclose(got, h, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("long_term,short_term,width", [
    (True, True, lambda m, R: (R + m) * 8),   # MemNet: [B_0..B_(m-1), H^1..H^R]
    (False, True, lambda m, R: R * 8),        # MemNet_NL: short-term only
    (True, False, lambda m, R: (m + 1) * 8),  # MemNet_NS: long-term and H^R
])
def test_ablations_change_the_gate_input_width(long_term, short_term, width):
    model = zoo.build("memnet", blocks=3, recursions=4, filters=8,
                      long_term=long_term, short_term=short_term)
    for m in range(1, 4):
        gate = model.get_layer(f"memory_block{m}").gate_unit
        assert gate.conv.kernel.shape == (1, 1, width(m, 4), 8)


def test_multi_supervised_output_is_the_weighted_sum_of_the_heads(rng):
    model = zoo.build("memnet", blocks=3, recursions=2, filters=8, multi_supervised=True)
    x = rng.random((2, 12, 10, 1), dtype="float32")
    out = model(x)
    assert set(out) == {"y", "y_1", "y_2", "y_3"}
    heads = np.stack([np.asarray(out[f"y_{m}"]) for m in (1, 2, 3)])
    np.testing.assert_allclose(np.asarray(out["y"]), heads.mean(0), rtol=1e-5, atol=1e-6)  # w_m = 1/M
    fusion = model.get_layer("y")
    fusion.w.assign(np.array([0.7, -0.2, 1.3], "float32"))
    out = model(x)
    heads = np.stack([np.asarray(out[f"y_{m}"]) for m in (1, 2, 3)])
    np.testing.assert_allclose(np.asarray(out["y"]), np.tensordot([0.7, -0.2, 1.3], heads, 1),
                               rtol=1e-5, atol=1e-6)
    # The heads differ: each reads its own block (and has its own BN).
    assert not np.allclose(heads[0], heads[2])


def test_multi_supervised_heads_share_the_reconstruction_conv():
    model = zoo.build("memnet", blocks=3, recursions=2, filters=8, multi_supervised=True)
    assert len([l for l in model.layers if l.name == "reconstruction_conv"]) == 1
    assert len([l for l in model.layers if l.name.endswith("_bn") and l.name.startswith("reconstruction")]) == 3


def test_gate_unit_concatenates_in_order(rng):
    gate = GateUnit(filters=2)
    a, b = (rng.normal(size=(1, 3, 3, 2)).astype("float32") for _ in range(2))
    gate.build([a.shape, b.shape])
    _randomise(gate, rng)
    joined = GateUnit(filters=2)
    joined.build(np.concatenate([a, b], -1).shape)
    joined.set_weights(gate.get_weights())
    np.testing.assert_allclose(np.asarray(gate([a, b])), np.asarray(joined(np.concatenate([a, b], -1))), rtol=1e-6)


# --- NLRN non-local module -------------------------------------------------

def _pair(rng, q, channels=8, embed=4):
    full, window = NonLocal(embed, None), NonLocal(embed, q)
    for layer in (full, window):
        layer.build((None, None, None, channels))
    weights = [rng.normal(0, 0.5, w.shape).astype("float32") for w in full.get_weights()]
    full.set_weights(weights)
    window.set_weights(weights)
    return full, window


def test_non_local_is_the_identity_at_initialisation(rng):
    x = rng.normal(size=(2, 9, 11, 8)).astype("float32")
    for q in (None, 5):
        layer = NonLocal(4, q)
        out, _ = layer(x)
        np.testing.assert_array_equal(np.asarray(out), x)


def test_window_equals_full_attention_when_it_covers_the_image(rng):
    x = rng.normal(size=(2, 9, 7, 8)).astype("float32")
    full, window = _pair(rng, q=17)  # 17 >= 2 * 9 - 1
    (a, corr_a), (b, corr_b) = full(x), window(x)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    # ... and so does the next state, fed the propagated correlation.
    (a, _), (b, _) = full(x, correlation=corr_a), window(x, correlation=corr_b)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_window_matches_a_brute_force_neighbourhood(rng):
    x = rng.normal(size=(1, 7, 6, 8)).astype("float32")
    full, window = _pair(rng, q=3)
    theta, phi, g = (np.asarray(f(x))[0] for f in (full.theta, full.phi, full.g))
    expected = x.copy()
    for i in range(7):
        for j in range(6):
            near = [(a, b) for a in range(i - 1, i + 2) for b in range(j - 1, j + 2) if 0 <= a < 7 and 0 <= b < 6]
            logits = np.array([theta[i, j] @ phi[a, b] for a, b in near])
            weights = np.exp(logits - logits.max())
            expected[0, i, j] += sum(w * g[a, b] for w, (a, b) in zip(weights / weights.sum(), near))
    out, _ = window(x)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-4, atol=1e-5)


def test_window_differs_from_full_attention_when_smaller_than_the_image(rng):
    x = rng.normal(size=(1, 12, 12, 8)).astype("float32")
    full, window = _pair(rng, q=3)
    assert not np.allclose(np.asarray(full(x)[0]), np.asarray(window(x)[0]), atol=1e-3)


def _nlrn_pair(rng, **kwargs):
    on = zoo.build("nlrn", states=3, filters=8, embed_filters=4, propagation=True, **kwargs)
    off = zoo.build("nlrn", states=3, filters=8, embed_filters=4, propagation=False, **kwargs)
    off.set_weights(on.get_weights())
    return on, off


@pytest.mark.parametrize("neighbourhood", [None, 5])
def test_propagation_matters_once_g_is_non_zero(rng, neighbourhood):
    on, off = _nlrn_pair(rng, neighbourhood=neighbourhood)
    x = rng.random((1, 11, 9, 1), dtype="float32")
    # With g = 0 the module is the identity, so propagation cannot show.
    np.testing.assert_allclose(np.asarray(on(x)), np.asarray(off(x)), atol=1e-6)
    non_local = on.get_layer("non_local")
    _randomise(non_local, rng, 1.0)
    off.get_layer("non_local").set_weights(non_local.get_weights())
    assert np.abs(np.asarray(on(x)) - np.asarray(off(x))).max() > 1e-4


def test_nlrn_shares_convs_and_non_local_but_not_batch_norm():
    model = zoo.build("nlrn", states=4, filters=8, embed_filters=4)
    names = [l.name for l in model.layers]
    assert names.count("non_local") == names.count("state_conv1") == names.count("state_conv2") == 1
    assert len([n for n in names if n.startswith("state") and "_bn" in n]) == 4 * 3


def test_non_local_rejects_even_neighbourhoods():
    with pytest.raises(ValueError, match="odd"):
        NonLocal(4, 6)


def test_gate_unit_inference_by_parts_equals_the_concatenation(rng):
    gate = GateUnit(filters=4)
    parts = [rng.normal(size=(2, 5, 6, c)).astype("float32") for c in (4, 4, 8)]
    gate.build([p.shape for p in parts])
    _randomise(gate, rng)
    for w in gate.weights:
        if "moving_variance" in w.path:
            w.assign(np.abs(w.numpy()) + 0.5)
    joined = np.concatenate(parts, -1)
    expected = gate.conv(np.maximum(np.asarray(gate.norm(joined, training=False)), 0))
    np.testing.assert_allclose(np.asarray(gate(parts, training=False)), np.asarray(expected),
                               rtol=1e-5, atol=1e-5)
