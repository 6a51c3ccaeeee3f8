#!/usr/bin/env python
"""Export a zoo model to TFLite for LiteRT / Android: the same as `zoo export` (see --help)."""

import argparse
import sys


def main(argv=None):
    from zoo.cli import EXPORT_HELP, add_export_arguments, cmd_export

    parser = argparse.ArgumentParser(prog="export_tflite.py", description=EXPORT_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_export_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return cmd_export(args)
    except (ValueError, OSError) as error:  # user errors; anything else is a bug
        print(f"export_tflite.py: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
