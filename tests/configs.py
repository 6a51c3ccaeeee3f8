"""The one place for the small per-model configurations tests build: registry overrides that
keep each model's structure (layer kinds, 9x9 xUnits, sub-pixel stages, memory blocks,
recurrent states) but make it small enough to build, run, save and convert in seconds.
Entries not listed (SRCNN, xSRCNN) are small as they are."""

SMALL = {
    "xdncnn": dict(filters=16, blocks=2),
    "xdncnn_rgb": dict(filters=16, blocks=2),
    "xnet": dict(layers=2, filters=16),
    "xsrresnet": dict(blocks=2, filters=16),
    "memnet": dict(blocks=2, recursions=2, filters=16, multi_supervised=True),
    "nlrn": dict(states=2, filters=16, embed_filters=8),
    "dncnn_s": dict(depth=4, filters=16),
    "dncnn_rgb": dict(depth=4, filters=16),
    "convnet": dict(layers=2, filters=16),
    "srresnet": dict(blocks=2, filters=16),
    "vdsr": dict(depth=4, filters=16),
}


def small(name):
    """The small overrides of registry entry ``name`` (none if it is small as it is)."""
    return SMALL.get(name, {})
