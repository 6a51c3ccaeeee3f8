"""The analyses behind the papers' figures, for trained zoo models.

- MemNet (Tai et al., ICCV 2017): gate weight norms (Fig. 5) and the radial
  power spectra of the intermediate predictions (Fig. 4);
- xUnit (Kligvasser et al., CVPR 2018): PSNR against parameter count (Fig. 3);
- NLRN (Liu et al., NeurIPS 2018): the non-local attention of one pixel (§3.3, §4);
- short training runs from the identity, for comparisons at small scale.

The notebooks in ``notebooks/`` plot what these functions return.
"""

import time

import numpy as np
import keras

from zoo.data.pipeline import training_dataset
from zoo.evaluate import evaluate
from zoo.layers import MemoryBlock, NonLocal
from zoo.models.identity import start_as_identity  # noqa: F401  (part of this API)
from zoo.params import count_params
from zoo.recipes import get_recipe, make_optimizer
from zoo.models import build
from zoo.restore import predict
from zoo.train import multi_supervised_loss_weights


# --- MemNet ------------------------------------------------------------------

def memory_blocks(model):
    """The memory blocks of a MemNet, in order (block 1 first)."""
    blocks = [layer for layer in model.layers if isinstance(layer, MemoryBlock)]
    if not blocks:
        raise ValueError(f"model {model.name!r} has no MemoryBlock layer")
    return blocks


def gate_weight_norms(model, normalise="all"):
    """MemNet Fig. 5: ``v_m^l = sqrt(sum_i W_m^gate(1, 1, l, i)^2)`` for every gate m.

    ``l`` runs over the L_m feature maps entering the m-th gate, in the
    zoo's concatenation order (:func:`gate_input_labels`); ``i`` over its
    output filters.  ``normalise``: ``"all"`` divides by the largest norm of
    all gates (the paper's [0, 1] scale, with the gates still comparable, as
    its second observation needs), ``"block"`` by each gate's own largest,
    ``None`` keeps the raw norms.

    Returns a list of M 1-D arrays; the m-th has ``(m + R) * filters``
    entries for MemNet (R for MemNet_NL, m + 1 for MemNet_NS).
    """
    if normalise not in ("all", "block", None):
        raise ValueError(f"normalise must be 'all', 'block' or None, got {normalise!r}")
    norms = []
    for block in memory_blocks(model):
        kernel = keras.ops.convert_to_numpy(block.gate_unit.conv.kernel)  # (1, 1, L_m, filters)
        norms.append(np.sqrt(np.sum(np.square(kernel[0, 0].astype(np.float64)), axis=1)))
    if normalise == "block":
        return [v / v.max() for v in norms]
    if normalise == "all":
        peak = max(v.max() for v in norms)
        return [v / peak for v in norms]
    return norms


def gate_input_labels(model):
    """Per block, the memory each group of ``filters`` gate inputs comes from.

    E.g. ``["B_0", "B_1", "H^1", ..., "H^R"]`` for block 2 of MemNet: long-term
    memory first, then the short-term memory of the recursions (the released
    code's order; see ``zoo.layers.memory``).
    """
    labels = []
    for m, block in enumerate(memory_blocks(model), start=1):
        long_term = [f"B_{k}" for k in range(m)] if block.long_term else []
        recursions = range(1, block.recursions + 1) if block.short_term else [block.recursions]
        labels.append(long_term + [f"H^{r}" for r in recursions])
    return labels


def radial_power_spectrum(image, bins=32):
    """MemNet Fig. 4(b): the centred power spectrum averaged over concentric rings.

    ``image`` is HxW or HxWxC (the spectra of the channels are averaged).  The
    power ``|FFT|^2 / (H W)`` is averaged over ``bins`` rings of equal width
    from 0 to 0.5 cycles/pixel (low to high frequency); the DC term and the
    corners beyond 0.5 are left out, so white noise of variance s^2 gives a
    flat s^2.  No window is applied.  Rings holding no frequency sample (only
    for ``bins`` above about min(H, W) / 2) are NaN.

    Returns ``(frequencies, density)``: ring centres in cycles/pixel and the
    mean power in each ring.
    """
    image = np.asarray(image, np.float64)
    if image.ndim == 2:
        image = image[..., None]
    height, width = image.shape[:2]
    power = np.mean(np.abs(np.fft.fft2(image, axes=(0, 1))) ** 2, axis=-1) / (height * width)
    radius = np.hypot(*np.meshgrid(np.fft.fftfreq(height), np.fft.fftfreq(width), indexing="ij"))
    ring = np.minimum((radius * 2 * bins).astype(int), bins - 1)
    keep = (radius > 0) & (radius <= 0.5)
    total = np.bincount(ring[keep], weights=power[keep], minlength=bins)
    count = np.bincount(ring[keep], minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        density = total / count
    frequencies = (np.arange(bins) + 0.5) * 0.5 / bins
    return frequencies, density


def prediction_spectra(model, image, bins=32):
    """MemNet Fig. 4: :func:`radial_power_spectrum` of every output of a multi-supervised MemNet.

    Fig. 4 compares the 4th and 6th intermediate predictions ``y_m`` (the heads
    of the multi-supervised model, ``x + f_rec(B_m)``), not the 64-channel
    block outputs.  Returns ``(frequencies, {"y": .., "y_1": .., ...})``.
    """
    outputs = predict(model, image, outputs="all")
    if not isinstance(outputs, dict):
        raise ValueError(f"model {model.name!r} has a single output: build it with "
                         "multi_supervised=True to get the intermediate predictions")
    spectra = {key: radial_power_spectrum(y, bins) for key, y in outputs.items()}
    frequencies = next(iter(spectra.values()))[0]
    return frequencies, {key: density for key, (_, density) in spectra.items()}


# --- Short training runs: the notebooks' small-scale studies ---------------------

def short_run(model, train, val, *, level, steps, patch_size, batch_size, task="denoise",
              seed=0):
    """Trains ``model`` briefly with ``model.fit`` from the identity, then scores it.

    Adam with the learning rate decaying from 1e-3 to 1e-4 over ``steps``
    (the ``demo`` recipe), MSE, and MemNet's Eq. 12 for multi-supervised
    models, on ``training_dataset(train, ...)`` patches; ``train`` is a
    folder, a list of folders or ``(name, image)`` pairs.  The score is
    :func:`zoo.evaluate.evaluate` over the image folder(s) ``val`` (SPEC §4).

    Returns ``{"psnr", "ssim", "input_psnr", "input_ssim", "loss", "seconds"}``.
    """
    start_as_identity(model)
    dataset = training_dataset(train, task=task, levels=[level], patch_size=patch_size,
                               batch_size=batch_size, seed=seed)
    weights = None
    if isinstance(model.output, dict):
        weights = multi_supervised_loss_weights(model.output)
        dataset = dataset.map(lambda x, y: (x, {key: y for key in weights}))
    model.compile(optimizer=make_optimizer(get_recipe("demo"), steps), loss_weights=weights,
                  loss={key: "mse" for key in weights} if weights else "mse")
    started = time.time()
    history = model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
    seconds = time.time() - started
    scores = evaluate(lambda x: predict(model, x), task, level, val, seed=seed)["mean"]
    keys = ("psnr", "ssim", "input_psnr", "input_ssim")
    return {**{key: scores[key] for key in keys}, "loss": history.history["loss"][-1],
            "seconds": seconds}


def psnr_vs_params(models, train, val, convention="paper", **run_options):
    """xUnit Fig. 3: :func:`short_run` of every ``(name, overrides)`` under the same options.

    Returns one row per model: ``model``, ``overrides``, ``params`` (under
    ``convention``, the xUnit paper's by default) and :func:`short_run`'s scores.
    """
    rows = []
    for name, overrides in models:
        model = build(name, **overrides)
        rows.append({"model": name, "overrides": dict(overrides),
                     "params": count_params(model, convention),
                     **short_run(model, train, val, **run_options)})
    return rows


# --- NLRN --------------------------------------------------------------------

def _non_local_calls(model):
    """The NonLocal layer and, per state, its input and whether it got the previous logits.

    Read from the functional graph: the layer is called once per state, and a
    propagating call receives the logits returned by the call before it.
    """
    layers = [layer for layer in model.layers if isinstance(layer, NonLocal)]
    if len(layers) != 1:
        raise ValueError(f"model {model.name!r} has {len(layers)} NonLocal layers; expected one")
    layer = layers[0]
    nodes = layer._inbound_nodes
    calls = []
    for t, node in enumerate(nodes):
        correlation = node.arguments.kwargs.get("correlation")
        if correlation is not None and (t == 0 or correlation is not nodes[t - 1].outputs[1]):
            raise ValueError("the non-local correlation does not come from the previous state")
        calls.append((node.arguments.args[0], correlation is not None))
    return layer, calls


def nonlocal_attention(model, image, pixel, state=None):
    """NLRN §3.3-§4: the softmax weights of ``pixel`` over its neighbourhood at a state.

    Rebuilt from the model's non-local module: ``theta`` and ``phi`` are applied
    to the module's input at every state up to ``state``; the logits
    ``theta_i . phi_j`` are summed over those states when the model propagates
    its correlation (§4), else taken from ``state`` alone; the softmax runs
    over the q x q window of ``pixel`` inside the image (the whole image for
    full attention).

    Args:
        model: an NLRN (``zoo.build("nlrn", ...)`` or loaded).
        image: HxWxC float image, the model's input.
        pixel: ``(row, column)`` of the attending position i.
        state: 1..T (default: the last state).

    Returns an HxW array of weights, zero outside the neighbourhood, summing to 1.
    """
    layer, calls = _non_local_calls(model)
    state = len(calls) if state is None else int(state)
    if not 1 <= state <= len(calls):
        raise ValueError(f"state must lie in 1..{len(calls)}, got {state}")
    image = np.asarray(image, np.float32)
    height, width = image.shape[:2]
    row, col = pixel
    if not (0 <= row < height and 0 <= col < width):
        raise ValueError(f"pixel {pixel} lies outside the {height}x{width} image")

    # States whose logits reach this softmax: a run of propagating calls ending at `state`.
    first = state
    while first > 1 and calls[first - 1][1]:
        first -= 1
    inputs = keras.Model(model.input, [x for x, _ in calls[first - 1:state]])(
        image[None], training=False)
    logits = np.zeros((height, width))
    for x in inputs if isinstance(inputs, (list, tuple)) else [inputs]:
        theta = keras.ops.convert_to_numpy(layer.theta(x))[0, row, col]
        phi = keras.ops.convert_to_numpy(layer.phi(x))[0]
        logits += phi.astype(np.float64) @ theta.astype(np.float64)

    allowed = np.ones((height, width), bool)
    if layer.neighbourhood is not None:
        r = layer.neighbourhood // 2
        rows, cols = np.arange(height)[:, None], np.arange(width)[None, :]
        allowed = (np.abs(rows - row) <= r) & (np.abs(cols - col) <= r)
    weights = np.where(allowed, np.exp(logits - logits[allowed].max()), 0.0)
    return weights / weights.sum()
