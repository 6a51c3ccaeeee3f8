"""Model builders, and the registry's lookups over them: importing this package registers every
model (``zoo.registry``), so ``from zoo.models import build, info`` always finds them all."""

from zoo.models.memnet import memnet
from zoo.models.nlrn import nlrn
from zoo.models.vdsr import vdsr
from zoo.models.xunit_nets import convnet, dncnn, srcnn, srresnet, xdncnn, xnet
from zoo.registry import build, describe, info, list_models

__all__ = ["xdncnn", "dncnn", "convnet", "xnet", "srcnn", "srresnet", "vdsr", "memnet", "nlrn",
           "build", "describe", "info", "list_models"]
