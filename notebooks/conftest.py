"""pytest runs the notebooks (nbmake) as smoke tests: ZOO_SMOKE=1 shrinks each to seconds.

The kernels inherit this environment. ``ZOO_SMOKE=0 pytest notebooks`` runs them in full.
"""

import os

os.environ.setdefault("ZOO_SMOKE", "1")
