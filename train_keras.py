#!/usr/bin/env python
"""Train a zoo model with model.fit: the same as `zoo train` (see --help)."""

import sys

from zoo.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
