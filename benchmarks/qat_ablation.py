"""Where the drop of a ``--qat`` int8 model sits: groups of roundings switched off one at a time.

    ZOO_OFFICIAL_MIRROR=../shared/official .venv/bin/python benchmarks/qat_ablation.py \
        [--model xsrcnn_f --weights official-x3 --task sr --level 3 --calibration ../shared/data/T91]
        [--steps 300]

Builds the int8 export form as ``zoo export --mode int8 --qat`` does (scales equalised, split
xUnits, batch norms as 1x1 convs), fine-tunes it with the export's defaults, and scores the Keras
simulation (which predicts the int8 file) on a development set: every 25th photo of BSD200
(8 photos; a training set, never a test set).  Then each group of roundings (the FakeQuants of
one name, e.g. all ``q_out`` of the xUnits) is replaced by a clip to its range alone, and the
drop is scored again; last, every activation rounding off (the int8 weights alone), and, for
comparison, the float model with its kernels rounded to int8 and nothing else.  About 5 min
for xSRCNNf and 30 min for xDnCNN on 2 cores.

Writes ``benchmarks/results/qat_ablation_<model>.{json,md}``.
"""

import argparse
import collections
import contextlib
import os
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras
import numpy as np
from keras import ops

from common import machine, write
from zoo.checkpoint import load_model
from zoo.data.tasks import get_task
from zoo.export import qat
from zoo.export.calibrate import calibration_inputs, fine_tune_quantized
from zoo.export.model import inference_model
from zoo.export.rewrites import integer_form
from zoo.export.settings import CALIBRATION_SAMPLES
from zoo.layers import XUnit
from zoo.protocol import evaluation_pairs, score
from zoo.restore import output_scale

DATA = Path(os.environ.get("ZOO_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def development_pairs(folder, task, level, mode, sub_pixel, every=25):
    """Protocol pairs of every ``every``-th file of ``folder`` (sorted)."""
    files = sorted(p for p in Path(folder).iterdir() if p.is_file())[::every]
    if not files:
        raise SystemExit(f"no images in {folder}")
    with tempfile.TemporaryDirectory(prefix="qat_dev_") as target:
        for path in files:
            (Path(target) / path.name).symlink_to(path.resolve())
        return evaluation_pairs(target, task, level, mode=mode, sub_pixel=sub_pixel, seed=0)


@contextlib.contextmanager
def int8_kernels(model):
    """``model``'s conv and xUnit kernels rounded as the int8 file's weights (per output channel;
    the xUnits' 9x9 kernels whole, coarser than their split pieces), nothing else rounded."""
    kernels = [(layer.kernel, -1) for layer in model.layers
               if isinstance(layer, keras.layers.Conv2D)]
    kernels += [(layer.depthwise.kernel, 2) for layer in model.layers if isinstance(layer, XUnit)]
    kept = [ops.convert_to_numpy(kernel) for kernel, _ in kernels]
    for kernel, axis in kernels:
        kernel.assign(qat.quantize_kernel(ops.convert_to_tensor(kernel), axis=axis))
    try:
        yield
    finally:
        for (kernel, _), value in zip(kernels, kept):
            kernel.assign(value)


@contextlib.contextmanager
def clipped(quants):
    """``quants`` clip to their ranges without rounding (inference only)."""
    for quant in quants:
        quant.call = lambda x, training=None, q=quant: ops.clip(x, q.lo, q.hi)
    try:
        yield
    finally:
        for quant in quants:
            del quant.call


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="xsrcnn_f")
    p.add_argument("--weights", default="official-x3")
    p.add_argument("--task", default="sr")
    p.add_argument("--level", type=int, default=3)
    p.add_argument("--calibration", default=str(DATA / "T91"))
    p.add_argument("--dev", default=str(DATA / "BSD200"), help="every 25th file is used")
    p.add_argument("--steps", type=int, default=300)
    a = p.parse_args()

    model = inference_model(load_model(a.model, a.weights))
    ratio = output_scale(model)
    upsampling = "sub-pixel" if ratio > 1 else "interpolated"
    mode = get_task(a.task).mode
    calibration = calibration_inputs(a.calibration, task=a.task, level=a.level, mode=mode,
                                     upsampling=upsampling, ratio=ratio,
                                     samples=CALIBRATION_SAMPLES, seed=0)
    ready = integer_form(model, calibration)
    start = time.time()
    simulated, _ = fine_tune_quantized(ready, calibration, a.calibration, task=a.task,
                                       level=a.level, mode=mode, upsampling=upsampling,
                                       ratio=ratio, steps=a.steps)
    seconds = time.time() - start
    pairs = development_pairs(a.dev, a.task, a.level, mode, upsampling == "sub-pixel")
    psnr = lambda m: float(np.mean([score(np.asarray(m(d[None], training=False))[0], c,
                                          a.task, a.level)["psnr"] for _, d, c in pairs]))
    reference = psnr(model)
    with int8_kernels(model):
        float_int8_weights = reference - psnr(model)
    drop = lambda: reference - psnr(simulated)
    base = drop()
    groups = collections.defaultdict(list)
    for quant in qat.fake_quants(simulated):
        groups[re.sub(r"\d+$", "", quant.name)].append(quant)
    rows = []
    for name, quants in groups.items():
        with clipped(quants):
            rows.append({"group": name, "roundings": len(quants), "saves_db": base - drop()})
        print(rows[-1], flush=True)
    with clipped(qat.fake_quants(simulated)):
        weights_only = drop()

    lines = [f"# Where the `--qat` drop sits: {a.model} {a.weights}, {a.task} {a.level}",
             "", f"`.venv/bin/python benchmarks/qat_ablation.py --model {a.model} --weights "
             f"{a.weights} --task {a.task} --level {a.level} --steps {a.steps}`; calibration and "
             f"fine-tuning on {Path(a.calibration).name}, development set: {len(pairs)} photos "
             f"of {Path(a.dev).name}. Keras float {reference:.3f} dB; the fine-tuned int8 "
             f"simulation loses {base:.4f} dB ({seconds:.0f} s of fine-tuning); with every "
             f"activation rounding off (each tensor still clipped to its range, int8 weights) "
             f"{weights_only:.4f} dB; the float model with int8 kernels alone (before fine-tuning; "
             f"xUnit kernels rounded whole) {float_int8_weights:.4f} dB.", "",
             "| group of roundings | count | switched off, the drop falls by (dB) |",
             "|---|---|---|"]
    lines += [f"| `{r['group']}` | {r['roundings']} | {r['saves_db']:+.4f} |"
              for r in sorted(rows, key=lambda r: -r["saves_db"])]
    write(f"qat_ablation_{a.model}", {"machine": machine(), "args": vars(a),
                                      "float_db": reference, "drop_db": base,
                                      "weights_only_drop_db": weights_only,
                                      "float_int8_kernels_drop_db": float_int8_weights,
                                      "fine_tuning_seconds": seconds, "groups": rows},
          "\n".join(lines))


if __name__ == "__main__":
    main()
