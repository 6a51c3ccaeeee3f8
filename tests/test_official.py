"""Official weights: readers, conversion exactness, fetch/check/cache, and the cards' numbers.

Needs ``../shared/official`` (the authors' files, laid out OWNER/REPO/PATH) for most tests; they
skip, saying why, without it.  Parity with PyTorch needs the ``bench`` extra.
"""

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

import zoo
from zoo import official
from zoo.convert import ConversionError, convert, read
from zoo.convert.torch_legacy import MAGIC, read_state_dict
from zoo.evaluate import evaluate_model

from .data_paths import DATA

OFFICIAL_DIR = Path(os.environ.get("ZOO_OFFICIAL_MIRROR") or DATA.parent / "official")
needs_official = pytest.mark.skipif(
    not OFFICIAL_DIR.is_dir(),
    reason=f"the authors' files are not in {OFFICIAL_DIR} (set ZOO_OFFICIAL_MIRROR)")


def _entry(model, tag):
    return official.get(model, tag)


def _original(model, tag):
    source = _entry(model, tag).source
    return OFFICIAL_DIR / source.repo / source.path


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """A fresh Keras cache and the shared folder as the mirror."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv(official.MIRROR_VARIABLE, str(OFFICIAL_DIR))
    return tmp_path / "keras"


def _legacy_file(path, state_pickle):
    """A file in PyTorch's legacy layout whose state-dict pickle is ``state_pickle``."""
    with open(path, "wb") as f:
        for header in (MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(header, f, protocol=2)
        f.write(state_pickle)
        pickle.dump([], f, protocol=2)
    return path


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo unpickled > pwned.txt",))


def test_restricted_unpickler_refuses_any_other_global_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = _legacy_file(tmp_path / "bad.pkl", pickle.dumps({"w": _RunsCode()}, protocol=2))
    with pytest.raises(ConversionError, match=r"refusing to unpickle (posix|os|nt)\.system"):
        read_state_dict(bad)
    assert not (tmp_path / "pwned.txt").exists()
    # the headers are read the same way: a global there is refused too
    with open(tmp_path / "bad_header.pkl", "wb") as f:
        f.write(pickle.dumps(_RunsCode(), protocol=2))
    with pytest.raises(ConversionError, match="refusing to unpickle"):
        read_state_dict(tmp_path / "bad_header.pkl")
    assert not (tmp_path / "pwned.txt").exists()


@needs_official
def test_torch_reader_equals_torch_load():
    torch = pytest.importorskip("torch", reason="needs the bench extra (PyTorch)")
    path = _original("xdncnn", "official-s25")
    ours = read_state_dict(path)
    theirs = torch.load(path, map_location="cpu", weights_only=True)
    assert list(ours) == list(theirs)
    for name, tensor in theirs.items():
        np.testing.assert_array_equal(ours[name], tensor.numpy())


@needs_official
@pytest.mark.parametrize("model,tag,reference", [("xdncnn", "official-s25", "XDnCNN"),
                                                 ("xsrcnn_f", "official-x3", "XSRCNNf")])
def test_converted_xunit_nets_equal_the_pytorch_reference(model, tag, reference, rng):
    torch = pytest.importorskip("torch", reason="needs the bench extra (PyTorch)")
    from benchmarks import torch_reference

    net = getattr(torch_reference, reference)().eval()
    state = torch.load(_original(model, tag), map_location="cpu", weights_only=True)
    keys = [k for k in net.state_dict() if not k.endswith("num_batches_tracked")]
    assert len(keys) == len(state)
    net.load_state_dict(dict(zip(keys, state.values())), strict=False)
    keras_model = convert(zoo.build(model), _original(model, tag), "torch-legacy")
    x = rng.uniform(0, 1, (1, 29, 23, 1)).astype("float32")
    with torch.no_grad():
        expected = net(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(np.asarray(keras_model(x)), expected, atol=1e-4)


def _correlate(x, w, b):
    """MatConvNet's ``vl_nnconv`` with pad 1, from its definition: ``y(i,j,k) = b(k) +
    sum_{u,v,c} w(u,v,c,k) x(i+u-1, j+v-1, c)``, ``w`` indexed as MATLAB's H x W x in x out."""
    kh, kw = w.shape[:2]
    padded = np.pad(x, ((kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    y = np.zeros(x.shape[:2] + (w.shape[3],))
    for u in range(kh):
        for v in range(kw):
            y += padded[u:u + x.shape[0], v:v + x.shape[1]] @ w[u, v]
    return y + b.ravel()


def _matlab_conv_layers(path):
    """(filters as MATLAB indexes them, biases) of every conv of a simplenn file, read with h5py
    directly: HDF5 keeps MATLAB's column-major order, so h5py's axes are MATLAB's reversed."""
    import h5py

    layers = []
    with h5py.File(path, "r") as f:
        for ref in f["net"]["layers"][()].ravel():
            layer = f[ref]
            if "weights" in layer:
                w, b = (f[r][()] for r in layer["weights"][()].ravel())
                w = np.transpose(w, tuple(range(w.ndim))[::-1])
                layers.append((w if w.ndim == 4 else w[..., None], b))
    return layers


@needs_official
def test_dncnn_conversion_keeps_the_kernel_orientation(rng):
    """A flipped or transposed net scores almost the same PSNR, so compare outputs with the
    MatConvNet definition on an asymmetric input instead."""
    path = _original("dncnn_s", "official-s25")
    layers = _matlab_conv_layers(path)
    assert layers[-1][0].shape == (3, 3, 64, 1) and layers[0][0].shape == (3, 3, 1, 64)
    x = rng.uniform(0, 1, (11, 7, 1))
    h = x
    for i, (w, b) in enumerate(layers):
        h = _correlate(h, w, b)
        h = np.maximum(h, 0) if i < len(layers) - 1 else h
    expected = x - h  # the net predicts the residual
    model = convert(zoo.build("dncnn_s"), path, "matconvnet-v7.3")
    got = np.asarray(model(x[None].astype("float32")))[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # the test can fail: the same weights flipped give another output
    flipped = [(w[::-1, ::-1], b) for w, b in layers]
    h = x
    for i, (w, b) in enumerate(flipped):
        h = _correlate(h, w, b)
        h = np.maximum(h, 0) if i < len(flipped) - 1 else h
    assert np.abs((x - h) - got).max() > 1e-2


@needs_official
def test_merged_batch_norm_is_the_conv_bias():
    model = convert(zoo.build("dncnn_s"), _original("dncnn_s", "official-s25"), "matconvnet-v7.3")
    norm = model.get_layer("block1_bn")
    z = np.random.default_rng(1).normal(size=(1, 5, 5, 64)).astype("float32")
    np.testing.assert_allclose(np.asarray(norm(z, training=False)),
                               z + np.asarray(norm.beta), rtol=1e-6, atol=1e-6)


@needs_official
def test_vdsr_conversion_keeps_the_kernel_orientation(rng):
    import scipy.io

    path = _original("vdsr", "official")
    cells = scipy.io.loadmat(path)["model"]
    weights, biases = cells["weight"][0, 0].ravel(), cells["bias"][0, 0].ravel()
    x = rng.uniform(0, 1, (9, 13, 1))
    h = x
    for i, (w, b) in enumerate(zip(weights, biases)):
        h = _correlate(h, w if w.ndim == 4 else w[..., None], b)
        h = np.maximum(h, 0) if i < len(weights) - 1 else h
    model = convert(zoo.build("vdsr"), path, "matlab-v5")
    np.testing.assert_allclose(np.asarray(model(x[None].astype("float32")))[0], x + h, atol=1e-4)


@needs_official
def test_files_that_do_not_fit_name_the_tensor():
    with pytest.raises(ConversionError, match=r"20 conv kernels, model 'dncnn_s' has 17"):
        convert(zoo.build("dncnn_s"), _original("dncnn_3", "official"), "matconvnet-v7.3")
    with pytest.raises(ConversionError, match=r"md1\.0\.features\.0\.weight has shape "
                                              r"\(42, 1, 9, 9\).*conv1/kernel needs \(9, 9, 1, 64\)"):
        convert(zoo.build("xsrcnn_f"), _original("xsrcnn_c", "official-x3"), "torch-legacy")
    with pytest.raises(ConversionError, match="not a legacy PyTorch file"):
        read(_original("vdsr", "official"), "torch-legacy")
    with pytest.raises(ConversionError, match=r"not a MATLAB v7\.3 \(HDF5\) file"):
        read(_original("vdsr", "official"), "matconvnet-v7.3")
    with pytest.raises(ConversionError, match=r"not a MATLAB v5 file \(.*v7\.3"):
        read(_original("dncnn_s", "official-s25"), "matlab-v5")


@needs_official
def test_first_build_converts_and_caches_then_works_offline(keras_home, monkeypatch):
    first = zoo.build("xsrcnn_f", weights="official-x3")
    cache = keras_home / "models" / "restoration-zoo"
    assert sorted(p.name for p in cache.iterdir()) == [
        "xsrcnn_f-official-x3.source.json", "xsrcnn_f-official-x3.weights.h5"]
    monkeypatch.delenv(official.MIRROR_VARIABLE)

    def no_network(*args):
        raise AssertionError("the second build must not download")

    monkeypatch.setattr(official, "_download", no_network)
    second = zoo.build("xsrcnn_f", weights="official-x3")
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)
    # a damaged cache is not used: it is converted again (from the mirror)
    (cache / "xsrcnn_f-official-x3.weights.h5").write_bytes(b"damaged")
    monkeypatch.setenv(official.MIRROR_VARIABLE, str(OFFICIAL_DIR))
    third = zoo.build("xsrcnn_f", weights="official-x3")
    for a, b in zip(first.get_weights(), third.get_weights()):
        np.testing.assert_array_equal(a, b)


def _one_byte_changed(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _truncated(path):
    path.write_bytes(path.read_bytes()[:-1000])


def _another_class(path):
    _legacy_file(path, pickle.dumps({"w": _RunsCode()}, protocol=2))


def _another_model(path):
    shutil.copyfile(_original("vdsr", "official"), path)


@needs_official
@pytest.mark.parametrize("damage", [_one_byte_changed, _truncated, _another_class, _another_model])
def test_bad_mirror_files_fail_in_one_line_and_cache_nothing(damage, keras_home, tmp_path,
                                                             monkeypatch):
    entry = _entry("xsrcnn_f", "official-x3")
    mirror = tmp_path / "mirror"
    target = mirror / entry.source.repo / entry.source.path
    target.parent.mkdir(parents=True)
    shutil.copyfile(_original("xsrcnn_f", "official-x3"), target)
    damage(target)
    monkeypatch.setenv(official.MIRROR_VARIABLE, str(mirror))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(official.OfficialWeightsError) as caught:
        zoo.build("xsrcnn_f", weights="official-x3")
    message = str(caught.value)
    assert "\n" not in message and entry.source.url in message
    assert official.MIRROR_VARIABLE in message
    assert not keras_home.exists() or not any(keras_home.rglob("*"))
    assert not (tmp_path / "pwned.txt").exists()


def test_a_failed_download_names_the_url_and_the_mirror_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv(official.MIRROR_VARIABLE, raising=False)

    def offline(url, folder, name):
        raise Exception(f"URL fetch failure on {url}: None -- [Errno -3] name resolution failed")

    monkeypatch.setattr(official, "_download", offline)
    with pytest.raises(official.OfficialWeightsError, match=r"cannot download https://github\.com/"
                                                            r"kligvasser/xUnit/raw/e12a65b.*ZOO_OFFICIAL_MIRROR=DIR"):
        zoo.build("xdncnn", weights="official-s25")

    def truncated(url, folder, name):
        path = Path(folder) / name
        path.write_bytes(b"\x80\x02partial")
        return str(path)

    monkeypatch.setattr(official, "_download", truncated)
    with pytest.raises(official.OfficialWeightsError, match=r"github\.com.*: 9 bytes, expected "
                                                            r"1247023 \(truncated"):
        zoo.build("xdncnn", weights="official-s25")
    assert not (tmp_path / "keras").exists()


def test_unknown_official_tag_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"'official-s99' for model 'xdncnn'; known: "
                                         r"official-s25, official-s50, bsd400-s25"):
        zoo.build("xdncnn", weights="official-s99")


def test_every_official_tag_has_a_measured_card():
    cards = {(c["model"], c["tag"]): c for c in zoo.list_pretrained() if "source" in c}
    assert set(cards) == {(e.model, e.tag) for e in official.OFFICIAL}
    for (model, tag), card in cards.items():
        entry = official.get(model, tag)
        assert card["source"]["sha256"] == entry.source.sha256 and card["source"]["url"] == entry.source.url
        measured = {(r["task"], r["set"], r["level"]) for r in card["results"]}
        expected = {(t, s, lvl) for t, levels, sets in entry.evaluations for s in sets for lvl in levels}
        assert measured == expected, f"{model} {tag}: card measured {sorted(measured)}"


# One card row per source format runs by default (the PyTorch xUnit nets on the small xSRCNNf,
# whose reader xDnCNN shares), the rest are slow.
QUICK = {("xsrcnn_f", "official-x3", 3), ("vdsr", "official", 3), ("dncnn_3", "official", 2)}
SMALL_SETS = ("Set12", "Set5", "Classic5")
ROWS = [(c, r) for c in zoo.list_pretrained() if "source" in c
        for r in c["results"] if r["set"] in SMALL_SETS]


@needs_official
@pytest.mark.parametrize("card,row", [
    pytest.param(c, r, marks=() if (c["model"], c["tag"], r["level"]) in QUICK else pytest.mark.slow,
                 id=f"{c['model']}-{c['tag']}-{r['set']}-{r['task']}{r['level']}")
    for c, r in ROWS])
def test_official_cards_are_reproduced(card, row, keras_home):
    if not (DATA / row["set"]).is_dir():
        pytest.skip(f"{row['set']} not found in {DATA}")
    model = zoo.build(card["model"], weights=card["tag"])
    evaluation = evaluate_model(model, zoo.info(card["model"]), row["task"], [row["level"]],
                                [DATA / row["set"]])
    measured = evaluation["results"][0]["mean"]
    assert measured["psnr"] == pytest.approx(row["psnr"], abs=0.01)
    assert measured["ssim"] == pytest.approx(row["ssim"], abs=0.0005)


@needs_official
@pytest.mark.slow
@pytest.mark.parametrize("model,tag,level,paper", [("xdncnn", "official-s25", 25, 29.21),
                                                   ("xdncnn", "official-s50", 50, 26.26),
                                                   ("dncnn_s", "official-s25", 25, 29.23)])
def test_official_weights_reproduce_the_papers_on_bsd68(model, tag, level, paper, keras_home):
    if not (DATA / "BSD68").is_dir():
        pytest.skip(f"BSD68 not found in {DATA}")
    evaluation = evaluate_model(zoo.build(model, weights=tag), zoo.info(model), "denoise",
                                [level], [DATA / "BSD68"])
    assert evaluation["results"][0]["mean"]["psnr"] == pytest.approx(paper, abs=0.02)
