"""Atomic file writes: a run interrupted at any moment leaves the old file or the new one,
never half of one."""

import os
from pathlib import Path


def write_atomically(path, write):
    """Calls ``write(staged)`` with a temporary path beside ``path`` (same folder, same name
    ending, so ``.keras`` / ``.weights.h5`` / ``.npz`` writers accept it), then renames it over
    ``path`` (``os.replace``, atomic); the temporary file is removed if anything fails.
    Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".partial.{path.name}")
    try:
        write(staged)
        os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)
    return path


def write_text_atomically(path, text):
    """``path`` holds ``text`` (UTF-8), written atomically."""
    return write_atomically(path, lambda staged: staged.write_text(text, encoding="utf-8"))


def write_bytes_atomically(path, data):
    """``path`` holds ``data``, written atomically."""
    return write_atomically(path, lambda staged: staged.write_bytes(data))
