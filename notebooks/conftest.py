"""pytest runs the notebooks (nbmake) as smoke tests: ZOO_SMOKE=1 shrinks each to seconds.

The kernels inherit this environment. ``ZOO_SMOKE=0 pytest notebooks`` runs them in full.
"""

import os

os.environ.setdefault("ZOO_SMOKE", "1")

# The official weights come from the shared mirror beside the project when it is there (CI),
# not from the network.
_MIRROR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "official")
if os.path.isdir(_MIRROR):
    os.environ.setdefault("ZOO_OFFICIAL_MIRROR", os.path.normpath(_MIRROR))
