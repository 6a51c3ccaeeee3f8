"""Where the shared test images are: ``../shared/data`` next to the project, or ``$ZOO_DATA``."""

import os
from pathlib import Path

import pytest

DATA = Path(
    os.environ.get("ZOO_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data"
)


def needs(*sets):
    """Skip unless every named data set folder exists under ``DATA``."""
    missing = [s for s in sets if not (DATA / s).is_dir()]
    return pytest.mark.skipif(
        bool(missing),
        reason=f"data set(s) {', '.join(missing)} not found in {DATA} "
        "(set ZOO_DATA to the shared data folder)",
    )
