"""Model builders; importing this package registers every model (see ``zoo.registry``)."""

from zoo.models.memnet import memnet
from zoo.models.nlrn import nlrn
from zoo.models.vdsr import vdsr
from zoo.models.xunit_nets import convnet, dncnn, srcnn, srresnet, xdncnn, xnet

__all__ = ["xdncnn", "dncnn", "convnet", "xnet", "srcnn", "srresnet", "vdsr", "memnet", "nlrn"]
