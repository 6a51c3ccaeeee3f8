"""Keras layers of the three papers, written with ``keras.ops`` so they run on every backend."""

from zoo.layers.memory import GateUnit, MemoryBlock, RecursiveUnit, WeightedSum
from zoo.layers.nonlocal_ import NonLocal
from zoo.layers.normalization import batch_norm
from zoo.layers.pixel_shuffle import PixelShuffle
from zoo.layers.xunit import XUnit

__all__ = ["XUnit", "RecursiveUnit", "GateUnit", "MemoryBlock", "WeightedSum",
           "NonLocal", "PixelShuffle", "batch_norm"]
