"""The authors' released models as weights tags (``official-*``): fetched, checked, converted, cached.

    zoo.build("xdncnn", weights="official-s25")

The package holds no released file and no weights made from one (two of the three repositories
carry no licence).  Each tag records the file's repository, commit, path, size and sha256.  On
first use the file is downloaded from GitHub at that commit (Keras' ``get_file``, with a progress
bar) into a temporary folder, its size and hash are checked, it is converted onto the zoo
builder (:mod:`zoo.convert`) and the result is cached as
``$KERAS_HOME/models/restoration-zoo/<model>-<tag>.weights.h5`` (``KERAS_HOME`` defaults to
``~/.keras``) beside a record of both hashes.  Later builds load the cache, offline, after checking
its hash.  ``ZOO_OFFICIAL_MIRROR=DIR`` (a folder laid out ``OWNER/REPO/PATH``) replaces the
network.  Any failure is one line naming the URL and the mirror variable, and leaves the cache as
it was.

The cards (``zoo/weights/official/*.card.json``) hold our measurements under SPEC §4 beside the
papers' numbers; ``zoo publish --official MODEL TAG`` (:mod:`zoo.publish`) (re)makes one.
"""

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from zoo.convert import convert
from zoo.files import write_atomically, write_text_atomically

MIRROR_VARIABLE = "ZOO_OFFICIAL_MIRROR"
CARDS_DIR = Path(__file__).resolve().parent / "weights" / "official"

LICENCES = {
    "kligvasser/xUnit": "none: the repository has no LICENSE file (weights not redistributed)",
    "cszn/DnCNN": "none: the repository has no LICENSE file (weights not redistributed)",
    "huangzehao/caffe-vdsr": "MIT, Copyright (c) 2016 Zehao Huang",
}
CONVERSIONS = {
    "torch-legacy": (
        "PyTorch legacy pickle read by a restricted unpickler (tensors, storages and OrderedDict "
        "only); conv kernels OIHW -> HWIO, depthwise (C,1,k,k) -> (k,k,C,1), BN weight/bias/"
        "running_mean/running_var -> gamma/beta/moving_mean/moving_variance (epsilon 1e-5 on both "
        "sides); inputs in [0, 1], denoisers output the noise"),
    "matconvnet-v7.3": (
        "MatConvNet simplenn in MATLAB v7.3 (HDF5) read with h5py; filters transposed back to "
        "MATLAB's H x W x in x out (= HWIO), not flipped (vl_nnconv correlates as TF does); the "
        "batch norms merged into the conv biases become BN layers with gamma 1, beta = bias, "
        "moving mean 0, moving variance 1 - epsilon (BN(x) = x + bias); inputs in [0, 1], the "
        "net outputs the residual (clean = input - output)"),
    "matlab-v5": (
        "MATLAB v5 model.weight{i}/model.bias{i} read with scipy.io.loadmat; weights are "
        "H x W x in x out (= HWIO), not flipped (the authors' test code runs vl_nnconv); input the "
        "bicubic-upsampled Y in [0, 1], output = input + residual"),
}

XUNIT_COMMIT = "e12a65b42709f3daf02bee761f5e5f9cf87fe0b7"
DNCNN_COMMIT = "e93b27812d3ff523a3a79d19e5e50d233d7a8d0a"
VDSR_COMMIT = "5a839232d179c10736ed94e7142068b168b61cf6"


class OfficialWeightsError(ValueError):
    """An official file that cannot be had or does not check out."""


@dataclasses.dataclass(frozen=True)
class Source:
    """One released file, pinned: ``https://github.com/{repo}/raw/{commit}/{path}``."""

    repo: str
    commit: str
    path: str
    size: int
    sha256: str
    format: str

    @property
    def url(self):
        return f"https://github.com/{self.repo}/raw/{self.commit}/{self.path}"

    @property
    def licence(self):
        return LICENCES[self.repo]


@dataclasses.dataclass(frozen=True)
class Official:
    """An official tag: the model, its file, what its card measures and what the paper reports.

    ``evaluations``: ``(task, levels, sets)`` triples (sets are folder names of the shared data).
    ``paper``: ``(task, set, level, psnr, where)`` rows from the papers (SPEC §1 and §5, MemNet
    Tables 4-5).
    """

    model: str
    tag: str
    source: Source
    evaluations: tuple
    paper: tuple = ()
    overrides: dict = dataclasses.field(default_factory=dict)

    @property
    def cache_name(self):
        return f"{self.model}-{self.tag}"


def _xunit(path, size, sha):
    return Source("kligvasser/xUnit", XUNIT_COMMIT, path, size, sha, "torch-legacy")


def _dncnn(path, size, sha):
    return Source("cszn/DnCNN", DNCNN_COMMIT, path, size, sha, "matconvnet-v7.3")


DENOISE_SETS = ("Set12", "BSD68")
XUNIT_PAPER = "xUnit paper (SPEC §1)"
DNCNN_PAPER = "DnCNN paper (SPEC §5)"
MEMNET_T4, MEMNET_T5 = "MemNet Table 4 (as DnCNN)", "MemNet Table 5 (as DnCNN)"

OFFICIAL = (
    Official("xdncnn", "official-s25", _xunit(
        "denoising/checkpoints/xdncnn_res_f64k3k9_s25.pkl", 1247023,
        "7b291502b1adb104f703d13feffe9fb25782de2004ff023975567c662b967a0b"),
        (("denoise", (25,), DENOISE_SETS),), (("denoise", "BSD68", 25, 29.21, XUNIT_PAPER),)),
    Official("xdncnn", "official-s50", _xunit(
        "denoising/checkpoints/xdncnn_res_f64k3k9_s50.pkl", 1247093,
        "aaccbb5a3e44e8fe940bcf989e882d41d8bc0d13a4103a4fb02c81d928476ef1"),
        (("denoise", (50,), DENOISE_SETS),), (("denoise", "BSD68", 50, 26.26, XUNIT_PAPER),)),
    Official("xsrcnn_f", "official-x3", _xunit(
        "super_resolution/checkpoints/xsrcnnf_s3_k9k3k5.pkl", 135892,
        "bcad83b08db94dacfefc725c1e9d7b56e5460cecc18525d0ab615b45473f4d1b"),
        (("sr", (3,), ("Set5",)),), (("sr", "BSD100", 3, 28.53, XUNIT_PAPER),)),
    Official("xsrcnn_f", "official-x4", _xunit(
        "super_resolution/checkpoints/xsrcnnf_s4_k9k3k5.pkl", 135906,
        "461025c428f0925bc283218e0930a9197aa73586017f6a785f893ba773e33bfe"),
        (("sr", (4,), ("Set5",)),), (("sr", "BSD100", 4, 27.06, XUNIT_PAPER),)),
    Official("xsrcnn_c", "official-x3", _xunit(
        "super_resolution/checkpoints/xsrcnnc_s3_c42c32.pkl", 181442,
        "7f9e10f57f807e1a6e503d881a9307f4850903607038a63e0a90b9af9a9a0950"),
        (("sr", (3,), ("Set5",)),), (("sr", "BSD100", 3, 28.54, XUNIT_PAPER),)),
    Official("xsrcnn_c", "official-x4", _xunit(
        "super_resolution/checkpoints/xsrcnnc_s4_c42c32.pkl", 181428,
        "ca8db647dee736f362bece8563a988e24409477757f51beafbd1b3fbce500baa"),
        (("sr", (4,), ("Set5",)),), (("sr", "BSD100", 4, 27.04, XUNIT_PAPER),)),
    Official("dncnn_s", "official-s15", _dncnn(
        "model/specifics/sigma=15.mat", 2292856,
        "657d5115fa05d371dbf0df1f0a931eff274dae29d08a9cc0824a28caf2460e21"),
        (("denoise", (15,), DENOISE_SETS),), (("denoise", "BSD68", 15, 31.73, DNCNN_PAPER),)),
    Official("dncnn_s", "official-s25", _dncnn(
        "model/specifics/sigma=25.mat", 2295807,
        "5a5404c9e3ef14e353760e14b885439408a654618e14f13b2e97b99b9835020b"),
        (("denoise", (25,), DENOISE_SETS),), (("denoise", "BSD68", 25, 29.23, DNCNN_PAPER),)),
    Official("dncnn_s", "official-s50", _dncnn(
        "model/specifics/sigma=50.mat", 2299259,
        "517dc0b55a8da2c129704ed7921b8557aac40cf3aae9f700dc41a9e25cad0983"),
        (("denoise", (50,), DENOISE_SETS),), (("denoise", "BSD68", 50, 26.23, DNCNN_PAPER),)),
    Official("dncnn_b", "official", _dncnn(
        "model/GD_Gray_Blind.mat", 2766582,
        "37f76da0b71dd2b2789ce91848fe2f184ab486203c9af9ac1b98199b60ea02b0"),
        (("denoise", (15, 25, 50), DENOISE_SETS),),
        tuple(("denoise", "BSD68", s, p, DNCNN_PAPER) for s, p in ((15, 31.61), (25, 29.16),
                                                                   (50, 26.23)))),
    Official("dncnn_3", "official", _dncnn(
        "model/DnCNN3.mat", 2771543,
        "3962377d522b6728417e364bf7a589cf34ddfb592af0bd9769e53f8123d17677"),
        (("denoise", (15, 25, 50), DENOISE_SETS), ("sr", (2, 3, 4), ("Set5",)),
         ("jpeg", (10, 20), ("Classic5",))),
        tuple(("sr", "Set5", s, p, MEMNET_T4) for s, p in ((2, 37.58), (3, 33.75), (4, 31.40)))
        + tuple(("jpeg", "Classic5", q, p, MEMNET_T5) for q, p in ((10, 29.40), (20, 31.63)))),
    Official("vdsr", "official", Source(
        "huangzehao/caffe-vdsr", VDSR_COMMIT, "Test/VDSR_Official.mat", 2490083,
        "f613166660840af1a2ca47e31b0337b951e7c4e094364f6135a16d81a55c323c", "matlab-v5"),
        (("sr", (2, 3, 4), ("Set5",)),),
        tuple(("sr", "Set5", s, p, "VDSR paper (SPEC §5)")
              for s, p in ((2, 37.53), (3, 33.66), (4, 31.35)))),
)


def is_official(tag):
    return str(tag).startswith("official")


def get(model, tag):
    """The :class:`Official` entry of ``model``'s ``tag``; a clear error listing the tags."""
    for entry in OFFICIAL:
        if entry.model == model and entry.tag == tag:
            return entry
    tags = [e.tag for e in OFFICIAL if e.model == model]
    raise ValueError(f"no official weights {tag!r} for model {model!r}; official: "
                     f"{', '.join(tags) if tags else 'none'} (see 'zoo list --pretrained')")


def cache_dir():
    """``$KERAS_HOME/models/restoration-zoo`` (``KERAS_HOME`` defaults to ``~/.keras``)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models" / "restoration-zoo"


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _hint(source, origin=None):
    where = "" if origin == source.url else f"source {source.url}; "
    return (f"{where}offline, set {MIRROR_VARIABLE}=DIR to a folder laid out OWNER/REPO/PATH "
            "holding the original file")


def check_file(path, source, origin):
    """Raises :class:`OfficialWeightsError` unless ``path`` has the source's size and sha256."""
    size = Path(path).stat().st_size
    if size != source.size:
        raise OfficialWeightsError(f"{origin}: {size} bytes, expected {source.size} (truncated or "
                                   f"another file); {_hint(source, origin)}")
    digest = sha256(path)
    if digest != source.sha256:
        raise OfficialWeightsError(f"{origin}: sha256 {digest[:16]}..., expected "
                                   f"{source.sha256[:16]}... (corrupted or another file); "
                                   f"{_hint(source, origin)}")
    return Path(path)


def _download(url, folder, name):
    import keras

    return keras.utils.get_file(fname=name, origin=url, cache_dir=str(folder), cache_subdir=".")


def fetch(source, folder):
    """The checked original file: from ``$ZOO_OFFICIAL_MIRROR`` if set, else downloaded into
    ``folder``."""
    mirror = os.environ.get(MIRROR_VARIABLE)
    if mirror:
        path = Path(mirror) / source.repo / source.path
        if not path.is_file():
            raise OfficialWeightsError(f"{MIRROR_VARIABLE}={mirror} has no {source.repo}/"
                                       f"{source.path}; {_hint(source)}")
        return check_file(path, source, str(path))
    try:
        path = _download(source.url, folder, Path(source.path).name)
    except Exception as error:  # urllib and Keras raise many kinds
        reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        raise OfficialWeightsError(f"cannot download {source.url} ({reason}); offline, set "
                                   f"{MIRROR_VARIABLE}=DIR to a folder laid out OWNER/REPO/PATH "
                                   "holding the original file") from None
    return check_file(path, source, source.url)


def _cached(entry):
    """The cached converted file if it is there and checks out against its record, else None."""
    target = cache_dir() / f"{entry.cache_name}.weights.h5"
    record = target.with_suffix("").with_suffix(".source.json")
    if not (target.is_file() and record.is_file()):
        return None
    try:
        meta = json.loads(record.read_text())
    except ValueError:
        return None
    if meta.get("source_sha256") != entry.source.sha256 or meta.get("sha256") != sha256(target):
        return None
    return target


def weights_file(name, tag, model):
    """The cached, checked ``.weights.h5`` of the official ``tag`` of registry model ``name``.

    On a cache miss the original is fetched, checked and converted into ``model`` (built by the
    caller with the tag's overrides), which is then saved to the cache.
    """
    entry = get(name, tag)
    cached = _cached(entry)
    if cached is not None:
        return cached
    with tempfile.TemporaryDirectory(prefix="zoo-official-") as tmp:
        original = fetch(entry.source, Path(tmp))
        print(f"converting {entry.source.url} onto {name} ({entry.source.format})",
              file=sys.stderr)
        convert(model, original, entry.source.format)
        converted = Path(tmp) / f"{entry.cache_name}.weights.h5"
        model.save_weights(converted)
        folder = cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / converted.name
        record = folder / f"{entry.cache_name}.source.json"
        meta = {"model": name, "tag": tag, "url": entry.source.url,
                "source_sha256": entry.source.sha256, "sha256": sha256(converted),
                "licence": entry.source.licence}
        write_atomically(target, lambda p: shutil.copyfile(converted, p))
        write_text_atomically(record, json.dumps(meta, indent=2) + "\n")
    return target


def base_card(entry):
    """What a card says before anything is measured: the source, its licence and the conversion."""
    s = entry.source
    return {
        "model": entry.model, "tag": entry.tag, "overrides": dict(entry.overrides),
        "tasks": sorted({task for task, _, _ in entry.evaluations}),
        "source": {"repo": s.repo, "commit": s.commit, "path": s.path, "url": s.url,
                   "bytes": s.size, "sha256": s.sha256, "format": s.format,
                   "licence": s.licence, "redistributed": False},
        "conversion": CONVERSIONS[s.format],
        "paper": [{"task": t, "set": d, "level": lvl, "psnr": p, "where": w}
                  for t, d, lvl, p, w in entry.paper],
        "results": [],
    }


def list_cards(model=None):
    """The official tags' cards (measured ones from ``CARDS_DIR``, else the base card)."""
    cards = []
    for entry in OFFICIAL:
        if model is not None and entry.model != model:
            continue
        path = CARDS_DIR / f"{entry.cache_name}.card.json"
        cards.append(json.loads(path.read_text()) if path.is_file() else base_card(entry))
    return cards
