"""The ``zoo`` command line: argument parsing only; the work is done by the package."""

import argparse
import importlib.util
import json
import sys

from zoo._tf import set_verbose
from zoo.data.tasks import TASKS, parse_level


def cmd_list(args):
    from zoo.models import describe, info, list_models

    if args.pretrained:
        return cmd_list_pretrained(args)
    names = list_models(args.pattern)
    if args.json:
        print(json.dumps([describe(n) for n in names], indent=2))
        return 0
    rows = []
    for name in names:
        entry, d = info(name), describe(name)
        scale = f"x{entry.scale} {entry.upsampling}" if entry.upsampling == "sub-pixel" else (
            entry.upsampling or "")
        rows.append([name, entry.paper, ", ".join(entry.tasks), entry.input, scale,
                     f"{d['params']['paper']:,}", f"{d['params']['kernels']:,}",
                     f"{d['params']['keras']:,}", f"{entry.paper_params} ({entry.convention})"])
    header = ["model", "paper", "tasks", "input", "upsampling", "params (paper)",
              "params (kernels)", "params (keras)", "paper says"]
    print(markdown_table(header, rows))
    return 0


def cmd_baseline(args):
    from zoo.evaluate import baseline, markdown_table as result_table

    result = baseline(args.task, parse_level(args.task, args.level), args.data, seed=args.seed)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.task} level {args.level}, degraded input vs clean (SPEC §4 protocol)\n")
        print(result_table(result))
    return 0


def cmd_train(args):
    from zoo.train import TrainConfig, train

    config = TrainConfig(
        model=args.model, overrides=_key_values(args.set), task=args.task,
        levels=_levels(args), train=args.train, val=args.val,
        recipe=args.recipe, recipe_overrides=_recipe_overrides(args), seed=args.seed,
        out=args.out or f"runs/{args.model}-{args.task}", mixed_precision=args.mixed_precision,
        strategy=args.strategy, val_limit=args.val_limit, checkpoint_every=args.checkpoint_every,
        data_path=args.data_path, identity_start=not args.plain_init)
    run = train(config)
    final = run["final"]
    print(f"\nValidation ({len(config.val or []) and ', '.join(config.val) or 'built-in demo images'}"
          f", {config.task} level {args.level}, SPEC §4 protocol):\n")
    print(markdown_table(["", "PSNR (dB)", "SSIM"],
                         [["degraded input", f"{final['input_psnr']:.2f}", f"{final['input_ssim']:.4f}"],
                          [config.model, f"{final['val_psnr']:.2f}", f"{final['val_ssim']:.4f}"]]))
    if not run.get("chief", True):  # a multi-worker run's other worker: nothing was kept here
        print(f"\n{run['steps']} steps in {run['wall_seconds']:.0f} s. This worker is not the "
              "chief: checkpoints, run.json and TensorBoard logs are in the chief's --out.")
        return 0
    print(f"\n{run['steps']} steps in {run['wall_seconds']:.0f} s. Checkpoints and run.json in "
          f"{config.out}/; TensorBoard: tensorboard --logdir {config.out}/logs")
    return 0


def _inference_options(args):
    options = {"ensemble": args.ensemble}
    if args.tile:
        options.update(tile=args.tile, overlap=args.overlap)
    if args.patches:
        options.update(patches=args.patches, stride=args.stride)
    return options


def cmd_evaluate(args):
    from zoo.evaluate import evaluate_model, results_table
    from zoo.models import info
    from zoo.checkpoint import load_model

    model = load_model(args.model, args.weights, **_key_values(args.set))
    evaluation = evaluate_model(model, info(args.model), args.task,
                                _levels(args), args.data,
                                seed=args.seed, intermediate=args.intermediate,
                                **_inference_options(args))
    print(json.dumps(evaluation, indent=2) if args.json else results_table(evaluation))
    return 0


def cmd_restore(args):
    from zoo.models import info
    from zoo.checkpoint import load_model
    from zoo.restore import restore_files

    model = load_model(args.model, args.weights, **_key_values(args.set))
    written = restore_files(model, info(args.model), args.inputs, args.out, task=args.task,
                            scale=args.scale, per_channel=args.per_channel,
                            **_inference_options(args))
    print(f"restored {len(written)} image(s) into {args.out}")
    return 0


def add_inference_arguments(p):
    p.add_argument("--model", required=True, help="registry name (see 'zoo list')")
    p.add_argument("--weights", help="a tag (zoo list --pretrained, e.g. official-s25), or a "
                                     ".weights.h5 or .keras file (default: untrained weights)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="builder override")
    p.add_argument("--tile", type=int, help="tile size for bounded memory (pixels of the input)")
    p.add_argument("--overlap", type=int,
                   help="tile overlap (default: the smallest exact one, from the model's "
                        "receptive field; MemNet M6R6: 197)")
    p.add_argument("--patches", type=int, help="NLRN protocol: patch size of averaged patches")
    p.add_argument("--stride", type=int, help="stride of --patches (NLRN: 7)")
    p.add_argument("--ensemble", action="store_true", help="self-ensemble over the 8 dihedral transforms")


def _key_values(pairs):
    """``["blocks=4", "multi_supervised=true"]`` -> ``{"blocks": 4, "multi_supervised": True}``."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--set takes KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value.lower() if value.lower() in ("true", "false", "null") else value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _recipe_overrides(args):
    overrides = _key_values(args.recipe_set)
    for field, value in (("patch_size", args.patch), ("batch_size", args.batch),
                         ("steps", args.steps), ("steps_per_epoch", args.steps_per_epoch)):
        if value is not None:
            overrides[field] = value
    if args.epochs is not None:
        per_epoch = overrides.get("steps_per_epoch")
        if per_epoch is None:
            from zoo.recipes import get_recipe
            per_epoch = get_recipe(args.recipe).steps_per_epoch
        overrides["steps"] = args.epochs * per_epoch
    return overrides


def _levels(args):
    """``--level 15,25,50`` (or ``10/25/40,5/5/5`` for per-channel sigmas) as levels of the task."""
    return [parse_level(args.task, text) for text in args.level.split(",")]


def cmd_list_pretrained(args):
    import fnmatch

    from zoo.pretrained import list_pretrained

    cards = [c for c in list_pretrained() if not args.pattern or fnmatch.fnmatch(c["model"], args.pattern)]
    if args.json:
        print(json.dumps(cards, indent=2))
        return 0
    rows = []
    for c in cards:
        ours = "; ".join(f"{r['set']} {r['task']} {r['level']}: {r['psnr']:.2f} / {r['ssim']:.4f}"
                         for r in c["results"]) or "not measured yet"
        paper = "; ".join(f"{p['set']} {p['level']}: {p['psnr']:.2f}"
                          for p in c.get("paper", [])) or "-"
        if "source" in c:
            s = c["source"]
            origin = f"{s['repo']}@{s['commit'][:7]}"
            licence = s["licence"].split(":")[0].split(",")[0]  # "none" or "MIT"
        else:
            t = c["training"]
            origin = (f"ours: {t['steps']} steps, {t['wall_seconds'] / 60:.0f} min, "
                      f"{t['versions']['backend']}")
            licence, paper = "Apache-2.0 (this project)", "-"
        rows.append([c["model"], c["tag"], origin, licence, ours, paper])
    print(markdown_table(["model", "weights", "source", "licence", "ours: PSNR / SSIM (SPEC §4)",
                          "paper PSNR"], rows) if rows else "no pretrained weights")
    return 0


def cmd_publish(args):
    from zoo.publish import publish, publish_official

    if args.official:
        model, tag = args.official
        card = publish_official(model, tag, args.data_root)
        print(json.dumps(card["results"], indent=2))
        print(f"wrote the card of {model} {tag}")
        return 0
    if not (args.run and args.tag and args.data):
        raise ValueError("publish needs --run, --tag and --data (or --official MODEL TAG)")
    card = publish(args.run, args.tag, args.data, checkpoint=args.checkpoint, note=args.note or "")
    print(json.dumps(card["results"], indent=2))
    print(f"wrote {card['file']} and its card")
    return 0


def markdown_table(header, rows):
    """A GitHub Markdown table with aligned columns."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def build_parser():
    parser = argparse.ArgumentParser(
        prog="zoo", description="Image-restoration model zoo: MemNet, xUnit nets and NLRN.")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's own log lines (hidden by default; so is setting "
                             "TF_CPP_MIN_LOG_LEVEL or ZOO_VERBOSE=1 yourself)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="print the model table (names, papers, parameter counts)")
    p.add_argument("pattern", nargs="?", help="glob over model names, e.g. 'x*'")
    p.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    p.add_argument("--pretrained", action="store_true",
                   help="list the weights tags (official and ours) and their cards")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("publish", help="ship a run's best weights in zoo/weights with a measured "
                                       "card, or measure an official tag's card")
    p.add_argument("--run", help="training output folder (with run.json, best.keras)")
    p.add_argument("--tag", help="weights tag, e.g. bsd400-s25")
    p.add_argument("--data", nargs="+", metavar="DIR", help="test sets for the card")
    p.add_argument("--official", nargs=2, metavar=("MODEL", "TAG"),
                   help="measure the card of an official tag on its test sets under --data-root")
    p.add_argument("--data-root", default="../shared/data",
                   help="with --official: the folder holding Set12, BSD68, Set5, Classic5")
    p.add_argument("--checkpoint", choices=["last", "best"], default="last",
                   help="which checkpoint (best = chosen on the run's validation images)")
    p.add_argument("--note", help="free text for the card (e.g. why it falls short)")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("baseline", help="PSNR/SSIM of the degraded input (the papers' "
                                        "Bicubic / JPEG / noisy columns)")
    p.add_argument("--task", required=True, choices=list(TASKS))
    p.add_argument("--level", required=True,
                   help="noise sigma (0-255 scale), SR scale or JPEG quality")
    p.add_argument("--data", required=True, nargs="+", help="folder(s) of clean test images")
    p.add_argument("--seed", type=int, default=0, help="base seed of the per-image noise")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_baseline)

    p = sub.add_parser("evaluate", help="paper-style PSNR/SSIM table of a model on test sets")
    add_inference_arguments(p)
    p.add_argument("--task", required=True, choices=list(TASKS))
    p.add_argument("--level", required=True, help="level(s), comma-separated (e.g. 15,25,50)")
    p.add_argument("--data", required=True, nargs="+", metavar="DIR", help="test set folder(s)")
    p.add_argument("--seed", type=int, default=0, help="base seed of the per-image noise")
    p.add_argument("--intermediate", action="store_true",
                   help="also score every intermediate prediction y_m (multi-supervised MemNet)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("restore", help="restore image files or folders into --out")
    add_inference_arguments(p)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    p.add_argument("--out", required=True, help="output folder (never an input's folder)")
    p.add_argument("--task", default="denoise", choices=list(TASKS))
    p.add_argument("--scale", type=int, help="SR scale for interpolated-input models")
    p.add_argument("--per-channel", action="store_true",
                   help="apply a gray model to R, G and B one by one")
    p.set_defaults(func=cmd_restore)

    if importlib.util.find_spec("tensorflow"):  # TFLite export needs it; the rest does not
        p = sub.add_parser("export", help="TFLite export (float32, float16, dynamic, int8, "
                                          "int16x8), validated on LiteRT, with a model card")
        add_export_arguments(p)
        p.set_defaults(func=cmd_export)

    p = sub.add_parser("train", help="train a model with model.fit (TensorBoard, checkpoints, resume)",
                       description=TRAIN_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(p)
    p.set_defaults(func=cmd_train)
    return parser


# --- zoo export --------------------------------------------------------------------------------

EXPORT_HELP = """Export a zoo model to TFLite (LiteRT), validate it and write its model card.

Examples:
  zoo export --model xdncnn --weights runs/xdncnn/best.keras --mode int8 --out xdncnn_int8.tflite
  zoo export --model xsrcnn_f --weights w.weights.h5 --task sr --level 3 --mode float16 \
      --out xsrcnn_f16.tflite
  zoo export --model nlrn --weights nlrn.keras --input-shape 256 256 --out nlrn_256.tflite

The card <name>.card.yaml beside the .tflite lists the input/output tensors (scale and zero point),
the ops, PSNR/SSIM of TFLite and Keras on the validation images, and latency.
"""


def add_export_arguments(p):
    """The ``zoo export`` / ``export_tflite.py`` arguments (imports no TensorFlow)."""
    from zoo.export.settings import (CALIBRATION_SAMPLES, GATE_CLIP, IO_DTYPES, LATENCY_RUNS,
                                     LATENCY_SIZES, MODES, QAT_LEARNING_RATE, QAT_STEPS)

    p.add_argument("--model", required=True, help="registry name (see 'zoo list')")
    p.add_argument("--weights", help="a shipped tag (zoo list --pretrained), a .weights.h5 or a "
                                      ".keras file (default: untrained weights)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="builder override for a .weights.h5 file, e.g. --set layers=3")
    p.add_argument("--task", choices=list(TASKS),
                   help="what the model restores (default: its first task)")
    p.add_argument("--level", help="sigma, SR scale, JPEG quality or R/G/B sigmas "
                                   "(default 25 / 3 / 10 / 25/25/25)")
    p.add_argument("--mode", default="float32", choices=MODES,
                   help="float32, float16 (weights), dynamic (dynamic-range int8 weights), "
                        "int8 (full integer, calibrated) or int16x8 (int16 activations, int8 "
                        "weights, calibrated; reference kernels only)")
    p.add_argument("--io-dtype", default="int8", choices=IO_DTYPES,
                   help="input/output type of an int8 model")
    p.add_argument("--input-shape", nargs=2, type=int, metavar=("H", "W"),
                   help="fixed input size (default: resizable)")
    p.add_argument("--out", required=True, help="output .tflite file")
    p.add_argument("--calibration", nargs="+", metavar="DIR",
                   help="folder(s) of clean images for int8 calibration (default: built-in)")
    p.add_argument("--calibration-samples", type=int, default=CALIBRATION_SAMPLES, metavar="N",
                   help=f"int8/int16x8 calibration patches (default {CALIBRATION_SAMPLES})")
    p.add_argument("--val", nargs="+", metavar="DIR",
                   help="folder(s) of clean validation images (default: built-in held-out two)")
    p.add_argument("--val-limit", type=int, default=0, help="validate on the first N images only")
    p.add_argument("--gate-clip", type=float, default=GATE_CLIP, metavar="B",
                   help="int8: xUnit gates read clip(d, -B, B), for finer int8 steps "
                        "(0: as trained)")
    p.add_argument("--xunit-split", type=int, metavar="S",
                   help="xUnit kxk depthwise convs run as sums of pieces of at most SxS taps, "
                        "which XNNPACK runs far faster (default 5; 0: whole, which in int8 "
                        "costs ~0.2 dB less and runs ~4x slower)")
    p.add_argument("--xunit-block", type=int, metavar="B",
                   help="xUnit depthwise convs run as grouped convs on BxB pixel blocks "
                        "(default: 4 for int8 with --input-shape, which runs ~1.3x faster "
                        "there; 0: off)")
    p.add_argument("--qat", action="store_true",
                   help="int8: quantization-aware fine-tuning of the weights and activation "
                        "ranges before conversion, on the --calibration images (see --qat-steps; "
                        "the task's training set gives smaller drops than the demo photos)")
    p.add_argument("--qat-steps", type=int, default=QAT_STEPS, metavar="N",
                   help=f"fine-tuning steps of --qat (default {QAT_STEPS})")
    p.add_argument("--qat-learning-rate", type=float, default=QAT_LEARNING_RATE, metavar="LR",
                   help=f"--qat's first Adam step size, decayed to 0 on a cosine "
                        f"(default {QAT_LEARNING_RATE:g})")
    p.add_argument("--allow-select-ops", action="store_true",
                   help="accept ops that need the Flex (SELECT_TF_OPS) delegate")
    p.add_argument("--latency-sizes", nargs="*", type=int, default=list(LATENCY_SIZES),
                   metavar="N", help="square input sides to time (default "
                                     f"{' '.join(map(str, LATENCY_SIZES))}; none: skip timing)")
    p.add_argument("--latency-runs", type=int, default=LATENCY_RUNS, metavar="N",
                   help=f"timed runs per setting, median kept (default {LATENCY_RUNS})")
    p.add_argument("--latency-every", action="store_true",
                   help="time the builtin kernels at every size and thread count too (default: "
                        "XNNPACK everywhere, builtin kernels at the largest size, most threads)")
    p.add_argument("--seed", type=int, default=0)


def cmd_export(args):
    """Runs :func:`zoo.export.export` from parsed arguments, prints a summary; returns the exit
    code."""
    from zoo.export import card_path, export

    if args.weights is None:
        print("zoo export: no --weights given: exporting untrained weights", flush=True)
    card = export(args.model, args.out, mode=args.mode, weights=args.weights,
                  overrides=_key_values(args.set), task=args.task,
                  level=None if args.level is None else parse_level(args.task, args.level),
                  input_shape=args.input_shape, io_dtype=args.io_dtype,
                  calibration_data=args.calibration, calibration_samples=args.calibration_samples,
                  val_data=args.val, val_limit=args.val_limit,
                  allow_select_ops=args.allow_select_ops, latency_sizes=args.latency_sizes,
                  latency_runs=args.latency_runs, latency_every=args.latency_every,
                  gate_clip=args.gate_clip,
                  xunit_split=args.xunit_split, xunit_block=args.xunit_block,
                  qat_steps=args.qat_steps if args.qat else 0,
                  qat_learning_rate=args.qat_learning_rate, seed=args.seed)
    print(f"wrote {args.out} ({card['file']['size_mb']:.2f} MB, {card['mode']}) and "
          f"{card_path(args.out)}")
    numerics = card["numerics"]
    if numerics.get("images"):
        rows = [[name, f"{numerics[key]['psnr']:.2f}", f"{numerics[key]['ssim']:.4f}"]
                for name, key in (("degraded input", "degraded"), ("Keras", "keras"),
                                  (f"TFLite {card['mode']}", "tflite")) if key in numerics]
        print(f"\n{card['task']} level {card['level']}, {numerics['images']} validation image(s), "
              "SPEC §4 protocol:\n")
        print(markdown_table(["", "PSNR (dB)", "SSIM"], rows))
        print(f"\nTFLite vs Keras: PSNR {numerics['worst_psnr_tflite_vs_keras']:.2f} dB (worst "
              f"image), max |diff| {numerics['max_abs_diff_vs_keras']:.2e}; quantization drop "
              f"{numerics['quantization_drop_db']:.3f} dB")
        if "fake_quant" in numerics:
            print(f"fake-quantized Keras: PSNR {numerics['fake_quant']['psnr']:.2f} dB; vs "
                  f"TFLite {numerics['fake_quant']['worst_psnr_vs_tflite']:.2f} dB (worst image)")
    results = card["latency"]["results"]
    if results:
        print()
        print(markdown_table(["input", "threads", "XNNPACK", "median ms", "GFLOP/s"],
                             [[f"{r['input_size'][0]}x{r['input_size'][1]}", r["threads"],
                               "on" if r["xnnpack"] else "off", f"{r['median_ms']:.1f}",
                               r.get("gflops_per_s", "")] for r in results]))
        print(f"\nfaster here: {card['latency']['default_runtime']['why']}")
    for note in card["notes"]:
        print(f"note: {note}")
    seconds = card["export_seconds"]
    print(f"export: {seconds['total']:.0f} s (" + ", ".join(
        f"{phase} {s:.0f} s" for phase, s in seconds.items() if phase != "total") + ")")
    return 0


TRAIN_HELP = """Train a zoo model for denoising, super-resolution or JPEG deblocking.

Examples:
  zoo train --model xnet --set layers=3 --recipe demo            # built-in images, ~2 min on CPU
  zoo train --model xdncnn --task denoise --level 25 --recipe xunit --train ../shared/data/BSD400
  zoo train --model memnet --task denoise --level 30,50,70 --recipe memnet --train DIR
  zoo train --model xsrcnn_f --task sr --level 3 --recipe xunit --train T91 BSD200 --val Set5
  zoo train --model dncnn_rgb --task denoise_rgb --level 10/25/40 --train DIR   # colour noise

A run interrupted for any reason resumes where it stopped when started again with the same --out.
"""


def add_train_arguments(p):
    p.add_argument("--model", default="xdncnn", help="registry name (see 'zoo list')")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="builder override, e.g. --set blocks=4 --set multi_supervised=true")
    p.add_argument("--task", default="denoise", choices=list(TASKS))
    p.add_argument("--level", default="25",
                   help="sigma (denoise), scale (sr), quality (jpeg) or R/G/B sigmas (denoise_rgb, "
                        "e.g. 10/25/40); several, comma-separated, train one blind model "
                        "(MemNet: 30,50,70)")
    p.add_argument("--train", nargs="+", metavar="DIR",
                   help="folder(s) of clean training images (default: built-in demo images)")
    p.add_argument("--val", nargs="+", metavar="DIR",
                   help="folder(s) of clean validation images (default: built-in demo images)")
    p.add_argument("--recipe", default="demo", help="memnet, xunit, dncnn, nlrn or demo")
    p.add_argument("--recipe-set", action="append", metavar="FIELD=VALUE",
                   help="override a recipe field, e.g. --recipe-set learning_rate=0.01")
    p.add_argument("--patch", type=int, help="patch size (recipe default otherwise)")
    p.add_argument("--batch", type=int, help="batch size (global, across replicas)")
    p.add_argument("--steps", type=int, help="training steps in all")
    p.add_argument("--epochs", type=int, help="epochs of --steps-per-epoch steps")
    p.add_argument("--steps-per-epoch", type=int, help="steps between validations")
    p.add_argument("--val-limit", type=int, default=0, help="validate on the first N images only")
    p.add_argument("--checkpoint-every", type=int, default=0,
                   help="steps between resumable backups (default: a quarter epoch)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output folder (default runs/MODEL-TASK)")
    p.add_argument("--data-path", choices=["tf", "numpy"],
                   help="tf.data (default on TensorFlow) or numpy PyDataset (default on JAX/PyTorch, "
                        "needs no TensorFlow: KERAS_BACKEND=jax zoo train ... on a GPU machine)")
    p.add_argument("--plain-init", action="store_true",
                   help="keep the paper's random initialisation of the last conv (default: "
                        "residual models start as the identity, their last conv zeroed)")
    p.add_argument("--mixed-precision", action="store_true",
                   help="float16 on GPU, bfloat16 on CPU")
    p.add_argument("--strategy", default="default", choices=["default", "mirrored", "multiworker"],
                   help="tf.distribute strategy: mirrored = all GPUs of this machine (under "
                        "JAX: keras.distribution.DataParallel over the local devices); "
                        "multiworker = one process per machine, reads TF_CONFIG (TensorFlow)")


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.verbose:
        set_verbose()
    try:
        return args.func(args)
    except (ValueError, OSError) as error:  # user errors; anything else is a bug: traceback
        print(f"zoo {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
