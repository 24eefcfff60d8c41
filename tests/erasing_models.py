"""Hand-written models for erasing mode: one per pattern that must not be removable, plus the
supernet and deeper ResNet of `trainonce.zoo.supernet`."""

from __future__ import annotations

import torch
from torch import nn

from trainonce.zoo.supernet import (  # noqa: F401 - the tests import them from here
    DeepResNet,
    PooledSuperNet,
    SuperNet,
    conv_bn,
    supernet_units,
)


class SigmoidBranch(nn.Module):
    """``x + sigmoid(conv(x))``: zeroing the conv gives 0.5, not 0: not removable."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, 1, 1)
        self.gate = conv_bn(4, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + torch.sigmoid(self.conv(x)) + self.gate(x)
        return self.head(x.mean((2, 3)))


class Chain(nn.Module):
    """A plain chain: no joint, so nothing can be erased."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(4, 8), nn.ReLU(), conv_bn(8, 8), nn.ReLU())
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean((2, 3)))


class TwoBranches(nn.Module):
    """``a(x) + b(x)``: either branch may go, not both (the sum would have no input)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(4, 8)
        self.a = nn.Sequential(conv_bn(8, 8), nn.ReLU(), conv_bn(8, 8))
        self.b = conv_bn(8, 8, 1)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.head((self.a(x) + self.b(x)).mean((2, 3)))


