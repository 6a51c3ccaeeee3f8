"""PyTorch references of xDnCNN and xSRCNNf, written from SPEC §1 (the papers' framework).

Used by ``benchmarks/speed.py`` to time the original framework in the same process as our
Keras and LiteRT models.  Needs the optional ``bench`` extra (``pip install -e ".[bench]"``).
"""

import torch
from torch import nn


class XUnit(nn.Module):
    """out = z * exp(-BN(DW_kxk(ReLU(BN(z))))^2)  (xUnit paper, Eqs. 5-6)."""

    def __init__(self, channels, kernel_size=9):
        super().__init__()
        self.gate = nn.Sequential(
            nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels),
            nn.BatchNorm2d(channels))

    def forward(self, z):
        d = self.gate(z)
        return z * torch.exp(-d * d)


class XDnCNN(nn.Module):
    """conv3x3 + xUnit; 7 x [BN, conv3x3 + xUnit]; conv3x3; output = x - noise."""

    def __init__(self, channels=1, filters=64, blocks=7):
        super().__init__()
        layers = [nn.Conv2d(channels, filters, 3, padding=1), XUnit(filters)]
        for _ in range(blocks):
            layers += [nn.BatchNorm2d(filters), nn.Conv2d(filters, filters, 3, padding=1), XUnit(filters)]
        layers.append(nn.Conv2d(filters, channels, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return x - self.body(x)


class XSRCNNf(nn.Module):
    """conv9x9 64 + xUnit; conv3x3 32 + xUnit; conv5x5 1 (bicubic-upscaled Y in, image out)."""

    def __init__(self, channels=1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 64, 9, padding=4), XUnit(64),
            nn.Conv2d(64, 32, 3, padding=1), XUnit(32),
            nn.Conv2d(32, channels, 5, padding=2))

    def forward(self, x):
        return self.body(x)


MODELS = {"xdncnn": XDnCNN, "xsrcnn_f": XSRCNNf}


def paper_params(model):
    """Conv kernels + BN gamma/beta, the xUnit paper's convention (as zoo.count_params)."""
    total = 0
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            total += module.weight.numel()
        elif isinstance(module, nn.BatchNorm2d):
            total += module.weight.numel() + module.bias.numel()
    return total
