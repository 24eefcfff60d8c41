"""``torch.meshgrid`` (anchor grids of detection heads): its channel rule maps each output dim
to one input's length; a grid of ``arange`` of the feature map's size couples no channels."""

from __future__ import annotations

import warnings

import pytest
import torch
from equivalence import check_slim, make_zeroing_visible
from torch import nn

import trainonce


class AnchorHead(nn.Module):
    """A YOLO-style head: box offsets plus the cell grid built from the feature map's shape."""

    def __init__(self, indexing: str = "ij") -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 8, 3, 1, 1), nn.ReLU())
        self.box = nn.Conv2d(8, 2, 1)
        self.indexing = indexing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.body(x)
        h, w = f.shape[2:]
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing=self.indexing)
        grid = torch.stack((xs, ys), 0).float() if self.indexing == "ij" else \
            torch.stack((ys, xs), 0).float().transpose(1, 2)
        return self.box(f) + grid


class ChannelGrid(nn.Module):
    """meshgrid of a channel vector and a spatial ``arange``: output dim of the channel vector
    carries its channels (coupled with ``f``'s), in either indexing."""

    def __init__(self, indexing: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, 1, 1)
        self.head = nn.Linear(8, 3)
        self.indexing = indexing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = torch.relu(self.conv(x))
        s, t = f.mean((0, 2, 3)), torch.arange(f.shape[3], dtype=f.dtype)
        if self.indexing == "ij":
            gs, gt = torch.meshgrid(s, t, indexing="ij")  # (C, W)
        else:
            gt, gs = torch.meshgrid(t, s, indexing="xy")  # (C, W) too
        y = f.mean(2) * gs + gt[0]  # (N, C, W); every row of gt is the arange
        return self.head(y.mean(2))


# an anchor grid from the feature map's shape couples nothing (all 16 channels stay prunable);
# a grid of a channel vector carries those channels through meshgrid
@pytest.mark.parametrize("indexing", ["ij", "xy"])
@pytest.mark.parametrize(("cls", "zigs"), [(AnchorHead, 16), (ChannelGrid, 8)],
                         ids=["anchor_grid", "channel_grid"])
def test_meshgrid_has_a_rule_and_slims_exactly(cls, zigs, indexing):
    torch.manual_seed(0)
    model, x = cls(indexing), torch.randn(2, 3, 6, 5)
    make_zeroing_visible(model, x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "no channel rule for meshgrid"
        space = trainonce.analyze(model, x)
    assert space.num_prunable_zigs == zigs
    check_slim(model, x, space=space)
