#!/usr/bin/env python
"""Export a zoo model to TFLite for LiteRT / Android: the same as `zoo export` (see --help)."""

import argparse
import os
import sys


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from zoo.export import EXPORT_HELP, add_export_arguments, cmd_export

    parser = argparse.ArgumentParser(prog="export_tflite.py", description=EXPORT_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_export_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return cmd_export(args)
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"export_tflite.py: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
