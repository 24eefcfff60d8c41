"""Models for erasing mode (`trainonce.analyze(mode="erase")`): a DARTS-style supernet of summed
candidate ops and a deeper ResNet, so there are ops and depth to erase (tests and benchmarks)."""

from __future__ import annotations

import torch
from torch import nn

from .resnet import BasicBlock


def conv_bn(cin: int, cout: int, k: int = 3, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, 1, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout))


def candidate_ops(c: int) -> nn.ModuleList:
    """DARTS-style candidates on one edge: conv 3x3, conv 1x1, separable conv (with weights:
    each is a removal unit) and skip / max-pool (no weights: never a unit)."""
    return nn.ModuleList([
        nn.Sequential(nn.ReLU(), conv_bn(c, c, 3)),
        nn.Sequential(nn.ReLU(), conv_bn(c, c, 1)),
        nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False), conv_bn(c, c, 1)),
        nn.Identity(),
        nn.MaxPool2d(3, 1, 1),
    ])


class Cell(nn.Module):
    """``nodes`` intermediate nodes; node j sums every candidate op on every edge from the
    cell input and the earlier nodes; the cell returns the last node."""

    def __init__(self, c: int, nodes: int = 2, skip: bool = True) -> None:
        super().__init__()
        self.edges = nn.ModuleList()
        self.skip = skip
        for j in range(nodes):
            self.edges.append(nn.ModuleList(candidate_ops(c) for _ in range(j + 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [x]
        for edges in self.edges:
            outs = [op(s) for ops, s in zip(edges, states) for op in
                    (ops if self.skip else ops[:3])]
            total = outs[0]
            for o in outs[1:]:
                total = total + o
            states.append(total)
        return states[-1]


class SuperNet(nn.Module):
    """stem, ``cells`` cells of summed candidate ops, pool, classifier."""

    def __init__(self, c: int = 8, cells: int = 2, nodes: int = 2, num_classes: int = 10,
                 in_channels: int = 1, skip: bool = True) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(c))
        self.cells = nn.Sequential(*[Cell(c, nodes, skip) for _ in range(cells)])
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cells(self.stem(x))
        return self.head(x.mean((2, 3)))


def supernet_units(cells: int = 2, nodes: int = 2) -> int:
    """Removal units of `SuperNet`: 3 weighted candidates per edge, j + 1 edges into node j."""
    return cells * 3 * sum(j + 1 for j in range(nodes))


class DeepResNet(nn.Module):
    """The built-in ResNet8 (`trainonce.zoo.resnet`) with ``blocks`` BasicBlocks per stage
    (ResNet-(6 * blocks + 2)): stages of width w, 2w, 4w, the first block of stages 2 and 3
    downsampling with a conv shortcut; global pool, linear. Depth to erase."""

    def __init__(self, blocks: int = 3, width: int = 8, num_classes: int = 10,
                 in_channels: int = 1) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(in_channels, w, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(w), nn.ReLU())
        layers: list[nn.Module] = []
        cin = w
        for stage, cout in enumerate((w, 2 * w, 4 * w)):
            for b in range(blocks):
                layers.append(BasicBlock(cin, cout, 2 if stage > 0 and b == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layers(self.stem(x)).mean((2, 3)))


class PooledSuperNet(SuperNet):
    """`SuperNet` with a 2x2 max-pool after every cell (a weight-free reduction, as DARTS'
    reduction cells): without it two cells see 9x9 pixels of a 14x14 digit and the dense
    supernet stops near 88% on MNIST; with it, 96%."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for cell in self.cells:
            x = nn.functional.max_pool2d(cell(x), 2)
        return self.head(x.mean((2, 3)))
