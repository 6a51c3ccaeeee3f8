"""The ``zoo`` command line: argument parsing only; the work is done by the package."""

import argparse
import json
import os
import sys


def _quiet_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def cmd_list(args):
    from zoo.registry import describe, info, list_models

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


def markdown_table(header, rows):
    """A GitHub Markdown table with aligned columns."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def build_parser():
    parser = argparse.ArgumentParser(
        prog="zoo", description="Image-restoration model zoo: MemNet, xUnit nets and NLRN.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="print the model table (names, papers, parameter counts)")
    p.add_argument("pattern", nargs="?", help="glob over model names, e.g. 'x*'")
    p.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    p.set_defaults(func=cmd_list)
    return parser


def main(argv=None):
    _quiet_tensorflow()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"zoo {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
