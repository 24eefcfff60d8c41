"""Erasing mode with Python's ``sum(op(x) for op in ops)``: it starts with ``0 + op0(x)``, and
adding (or subtracting) a literal zero is the identity, so every candidate is a removal unit."""

from __future__ import annotations

import torch
from equivalence import check_slim, make_zeroing_visible
from erasing_models import conv_bn
from torch import nn

import trainonce


class SumEdges(nn.Module):
    """Two edges of three weighted candidates each, summed with the builtin ``sum``; the second
    edge's sum also goes through ``- 0`` and ``+ 0`` (identities)."""

    def __init__(self, c: int = 6) -> None:
        super().__init__()
        self.stem = conv_bn(3, c)
        self.edges = nn.ModuleList(
            nn.ModuleList([conv_bn(c, c, 3), conv_bn(c, c, 1), conv_bn(c, c, 3, groups=c)])
            for _ in range(2))
        self.head = nn.Linear(c, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(sum(op(x) for op in self.edges[0]))
        x = (sum(op(x) for op in self.edges[1]) - 0) + 0
        return self.head(x.mean((2, 3)))


def _units(space) -> list:
    return [g for g in space.groups if g.kind == "structure"]


def test_every_summed_candidate_is_a_removable_unit():
    model, x = SumEdges().eval(), torch.randn(2, 3, 8, 8)
    space = trainonce.analyze(model, x, mode="erase")
    units = _units(space)
    assert len(units) == 6 and all(g.prunable for g in units), \
        [(g.name, g.reason) for g in units]


def test_random_erasures_of_summed_candidates_slim_exactly():
    torch.manual_seed(0)
    model, x = SumEdges(), torch.randn(2, 3, 8, 8)
    make_zeroing_visible(model, x)
    check_slim(model, x, mode="erase")


def test_whole_sum_erased_is_refused():
    """Every candidate of one edge gone leaves the sum with no input (``0 + 0 + 0``)."""
    model, x = SumEdges().eval(), torch.randn(2, 3, 8, 8)
    space = trainonce.analyze(model, x, mode="erase")
    zero = torch.zeros(space.num_zigs, dtype=torch.bool)
    first_edge = [g.offset for g in _units(space) if g.name.startswith("edges.0.")]
    assert len(first_edge) == 3
    zero[first_edge[:2]] = True
    assert space.valid(zero)
    zero[first_edge] = True
    assert not space.valid(zero)


def test_adding_a_nonzero_number_still_refused():
    class PlusOne(SumEdges):
        def forward(self, x):
            x = self.stem(x)
            x = self.edges[0][0](x) + 1 + self.edges[0][1](x)
            return self.head(x.mean((2, 3)))

    space = trainonce.analyze(PlusOne().eval(), torch.randn(2, 3, 8, 8), mode="erase")
    refused = {g.name: g.reason for g in _units(space) if not g.prunable}
    assert list(refused.values()) == ["it is added to itself or to a number"], refused
    assert next(iter(refused)).startswith("edges.0.0")


def test_prune_mode_through_sum_start():
    torch.manual_seed(0)
    model, x = SumEdges(), torch.randn(2, 3, 8, 8)
    make_zeroing_visible(model, x)
    check_slim(model, x)
