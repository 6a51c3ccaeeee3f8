"""The figure analyses: MemNet gate norms and spectra, xUnit PSNR vs parameters, NLRN attention."""

import numpy as np
import pytest
import keras

import zoo
from zoo.analysis import (gate_input_labels, gate_weight_norms, nonlocal_attention,
                          prediction_spectra, psnr_vs_params, radial_power_spectrum, short_run,
                          start_as_identity)


def _randomise(model, rng, scale=0.5):
    """Random weights, BN variances kept positive, so every path of the model matters."""
    for w in model.weights:
        value = rng.normal(0, scale, w.shape)
        w.assign((np.abs(value) + 0.5 if "variance" in w.path else value).astype("float32"))


# --- MemNet Fig. 5 ---------------------------------------------------------------

@pytest.mark.parametrize("long_term,short_term,width", [
    (True, True, lambda m, r: m + r),    # MemNet: B_0..B_(m-1), H^1..H^R
    (False, True, lambda m, r: r),       # MemNet_NL
    (True, False, lambda m, r: m + 1),   # MemNet_NS
])
def test_gate_norms_have_one_entry_per_gate_input(long_term, short_term, width):
    model = zoo.build("memnet", blocks=3, recursions=2, filters=8, long_term=long_term,
                      short_term=short_term)
    norms, labels = gate_weight_norms(model), gate_input_labels(model)
    assert [len(v) for v in norms] == [width(m, 2) * 8 for m in (1, 2, 3)]
    assert [len(l) * 8 for l in labels] == [len(v) for v in norms]
    assert max(v.max() for v in norms) == pytest.approx(1.0)
    assert min(v.min() for v in norms) >= 0
    assert all(v.max() == pytest.approx(1.0) for v in gate_weight_norms(model, normalise="block"))


def test_gate_norms_are_the_l2_norms_over_output_filters(rng):
    model = zoo.build("memnet", blocks=2, recursions=2, filters=4)
    _randomise(model, rng)
    kernels = [model.get_layer(f"memory_block{m}").gate_unit.conv.kernel.numpy() for m in (1, 2)]
    raw = [np.linalg.norm(k[0, 0], axis=1) for k in kernels]  # over the 4 output filters i
    peak = max(v.max() for v in raw)
    for got, unscaled, expected in zip(gate_weight_norms(model), gate_weight_norms(model, None), raw):
        np.testing.assert_allclose(got, expected / peak, rtol=1e-6)
        np.testing.assert_allclose(unscaled, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="normalise"):
        gate_weight_norms(model, normalise="max")
    assert gate_input_labels(model)[1] == ["B_0", "B_1", "H^1", "H^2"]


# --- MemNet Fig. 4 ---------------------------------------------------------------

def test_white_noise_has_a_flat_spectrum_at_its_variance(rng):
    noise = rng.normal(0, 2.0, (512, 512))
    frequencies, density = radial_power_spectrum(noise, bins=16)
    assert frequencies[0] == pytest.approx(1 / 64) and frequencies[-1] == pytest.approx(31 / 64)
    np.testing.assert_allclose(density, 4.0, rtol=0.15)
    assert np.mean(density) == pytest.approx(4.0, rel=0.03)


def test_blurred_noise_loses_power_with_frequency(rng):
    noise = rng.normal(size=(256, 256))
    taps = np.exp(-0.5 * (np.arange(-8, 9) / 2.0) ** 2)
    blurred = np.apply_along_axis(np.convolve, 0, noise, taps / taps.sum(), "same")
    blurred = np.apply_along_axis(np.convolve, 1, blurred, taps / taps.sum(), "same")
    _, density = radial_power_spectrum(blurred[..., None], bins=16)
    assert np.all(np.diff(density) < 0)
    assert density[-1] < 1e-3 * density[0]


def test_a_sinusoid_peaks_in_the_ring_of_its_frequency():
    rows, cols = np.mgrid[:128, :96]
    wave = np.cos(2 * np.pi * (0.1 * rows + 0.2 * cols))
    frequencies, density = radial_power_spectrum(wave, bins=20)
    ring = np.nanargmax(density)
    assert abs(frequencies[ring] - np.hypot(0.1, 0.2)) <= 0.5 * 0.5 / 20


def test_prediction_spectra_cover_every_head():
    model = zoo.build("memnet", blocks=2, recursions=1, filters=4, multi_supervised=True)
    image = np.random.default_rng(0).random((24, 20, 1), dtype="float32")
    frequencies, spectra = prediction_spectra(model, image, bins=6)
    assert sorted(spectra) == ["y", "y_1", "y_2"] and len(frequencies) == 6
    with pytest.raises(ValueError, match="multi_supervised"):
        prediction_spectra(zoo.build("memnet", blocks=1, recursions=1, filters=4), image)


# --- Short runs and xUnit Fig. 3 -------------------------------------------------

@pytest.mark.parametrize("name", ["srcnn", "xsrcnn_f", "srresnet"])
def test_start_as_identity_refuses_non_residual_models(name):
    with pytest.raises(ValueError, match="is not residual"):
        start_as_identity(zoo.build(name, **({"blocks": 1} if name == "srresnet" else {})))


@pytest.mark.parametrize("name,overrides", [
    ("convnet", {"layers": 2, "filters": 8}),
    ("xnet", {"layers": 2, "filters": 8}),
    ("xdncnn", {"filters": 8, "blocks": 1}),
    ("memnet", {"blocks": 2, "recursions": 1, "filters": 4, "multi_supervised": True}),
    ("nlrn", {"states": 2, "filters": 8, "embed_filters": 4}),
])
def test_start_as_identity_returns_the_input(rng, name, overrides):
    model = zoo.build(name, **overrides)
    _randomise(model, rng)
    if "multi_supervised" in overrides:  # fusion weights back to 1/M: y is then the heads' mean
        model.get_layer("y").set_weights([np.full(2, 0.5, "float32")])
    image = rng.random((1, 12, 10, 1), dtype="float32")
    outputs = keras.tree.flatten(start_as_identity(model)(image, training=False))
    for output in outputs:
        np.testing.assert_allclose(np.asarray(output), image, atol=1e-6)


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for name, image in zoo.data.demo_images("gray")[:2]:
        zoo.data.write_image(folder / f"{name}.png", image[:48, :48])
    return [str(folder)]


def test_psnr_vs_params_counts_and_scores_each_model(crops):
    options = dict(level=25, steps=2, patch_size=16, batch_size=2)
    rows = psnr_vs_params([("convnet", {"layers": 1}), ("xnet", {"layers": 1, "filters": 4})],
                          crops, crops, **options)
    assert [r["params"] for r in rows] == [
        zoo.count_params(zoo.build("convnet", layers=1)),
        zoo.count_params(zoo.build("xnet", layers=1, filters=4))]
    baseline = zoo.evaluate.baseline("denoise", 25, crops)["mean"]["psnr"]
    assert all(r["input_psnr"] == pytest.approx(baseline) for r in rows)
    assert all(np.isfinite(r["psnr"]) and r["seconds"] > 0 for r in rows)


def test_short_run_trains_multi_supervised_memnet_on_eq12(crops):
    model = zoo.build("memnet", blocks=2, recursions=1, filters=4, multi_supervised=True)
    run = short_run(model, crops, crops, level=25, steps=2, patch_size=16, batch_size=2)
    assert np.isfinite(run["loss"]) and np.isfinite(run["psnr"])
    x = np.random.default_rng(0).random((2, 16, 16, 1), dtype="float32")
    target = np.zeros_like(x)
    outputs = model(x, training=False)
    mse = {k: float(np.mean(np.square(np.asarray(v) - target))) for k, v in outputs.items()}
    loss = model.compute_loss(x=x, y={k: target for k in outputs}, y_pred=outputs)
    alpha = 1 / 3  # Eq. 12 with M = 2: alpha = 1 / (M + 1) on y, (1 - alpha) / M on each y_m
    expected = alpha * mse["y"] + (1 - alpha) / 2 * (mse["y_1"] + mse["y_2"])
    assert float(loss) == pytest.approx(expected, rel=1e-5)


# --- NLRN attention --------------------------------------------------------------

def _nlrn(rng, neighbourhood, propagation=True):
    model = zoo.build("nlrn", states=3, filters=8, embed_filters=4,
                      neighbourhood=neighbourhood, propagation=propagation)
    _randomise(model, rng)
    return model


@pytest.mark.parametrize("neighbourhood", [5, None])
@pytest.mark.parametrize("propagation", [True, False])
def test_attention_reproduces_the_models_non_local_output(rng, neighbourhood, propagation):
    """z_i = sum_j w_ij g_j: the weights rebuilt from theta/phi give the model's own z."""
    model = _nlrn(rng, neighbourhood, propagation)
    image = rng.random((11, 9, 1), dtype="float32")
    g = model.get_layer("non_local").g
    for state in (1, 2, 3):
        probe = keras.Model(model.input, [model.get_layer(f"state{state}_relu1").output,
                                           model.get_layer(f"state{state}_bn2").input])
        x, out = (np.asarray(t)[0] for t in probe(image[None], training=False))
        values = np.asarray(g(x[None]))[0]
        for pixel in [(0, 0), (5, 4), (10, 7)]:
            weights = nonlocal_attention(model, image, pixel, state)
            assert weights.sum() == pytest.approx(1.0, abs=1e-9) and weights.min() >= 0
            if neighbourhood:
                rows, cols = np.nonzero(weights)
                assert np.abs(rows - pixel[0]).max() <= 2 and np.abs(cols - pixel[1]).max() <= 2
            z = np.einsum("hw,hwc->c", weights, values)
            np.testing.assert_allclose(z, out[pixel] - x[pixel], rtol=1e-3, atol=1e-4)


def test_attention_matches_a_brute_force_softmax_over_the_window(rng):
    model = _nlrn(rng, 3)
    image = rng.random((7, 6, 1), dtype="float32")
    layer = model.get_layer("non_local")
    inputs = keras.Model(model.input, [model.get_layer(f"state{t}_relu1").output
                                        for t in (1, 2)])(image[None], training=False)
    theta = [np.asarray(layer.theta(x))[0] for x in inputs]
    phi = [np.asarray(layer.phi(x))[0] for x in inputs]
    i, j = 3, 0
    near = [(a, b) for a in range(i - 1, i + 2) for b in range(j - 1, j + 2)
            if 0 <= a < 7 and 0 <= b < 6]
    logits = np.array([sum(t[i, j] @ p[a, b] for t, p in zip(theta, phi)) for a, b in near])
    expected = np.exp(logits - logits.max())
    weights = nonlocal_attention(model, image, (i, j), state=2)
    np.testing.assert_allclose([weights[a, b] for a, b in near], expected / expected.sum(),
                               rtol=1e-4)


def test_a_window_covering_the_image_gives_full_attention(rng):
    window = _nlrn(rng, 17)  # 17 >= 2 * 9 - 1
    full = zoo.build("nlrn", states=3, filters=8, embed_filters=4, neighbourhood=None)
    full.set_weights(window.get_weights())
    image = rng.random((9, 8, 1), dtype="float32")
    for state in (1, 3):
        np.testing.assert_allclose(nonlocal_attention(window, image, (4, 7), state),
                                   nonlocal_attention(full, image, (4, 7), state), atol=1e-7)


def test_attention_refuses_bad_requests(rng):
    model = _nlrn(rng, 5)
    image = np.zeros((8, 8, 1), "float32")
    with pytest.raises(ValueError, match="state"):
        nonlocal_attention(model, image, (1, 1), state=4)
    with pytest.raises(ValueError, match="outside"):
        nonlocal_attention(model, image, (8, 1))
    with pytest.raises(ValueError, match="NonLocal"):
        nonlocal_attention(zoo.build("convnet", layers=1), image, (1, 1))
