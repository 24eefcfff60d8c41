"""Erasing every input of an inner sum leaves a zero value that the joint after it must be able
to drop: not from an add with alpha (``add(a + c, b, alpha=2)`` would become ``b``, not ``2b``),
not from a broadcast add (the survivor has the smaller shape), not from a concat (the layer after
it still reads those channels). Such sets are invalid; every other set slims exactly."""

from __future__ import annotations

import itertools

import pytest
import torch
from equivalence import check_slim, make_zeroing_visible
from erasing_models import conv_bn
from torch import nn

import trainonce


class Inner(nn.Module):
    """``outer(a(x) + c(x), b(x))`` for the three joints that cannot drop a zero input."""

    def __init__(self, outer: str, c: int = 6) -> None:
        super().__init__()
        self.outer = outer
        self.stem = conv_bn(3, c)
        self.a, self.c = conv_bn(c, c, 3), conv_bn(c, c, 1)
        self.b = (nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c, 1))
                  if outer == "broadcast" else conv_bn(c, c, 1))
        self.head = nn.Linear(2 * c if outer == "cat" else c, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        inner = self.a(x) + self.c(x)
        if self.outer == "alpha":
            y = torch.add(inner, self.b(x), alpha=2.0)
        elif self.outer == "broadcast":
            y = inner + self.b(x)
        else:
            y = torch.cat([inner, self.b(x)], 1)
        return self.head(y.mean((2, 3)))


OUTERS = {"alpha": "scaled", "broadcast": "broadcast", "cat": "concatenated"}


@pytest.mark.parametrize("outer", sorted(OUTERS))
def test_emptying_an_inner_sum_is_refused_where_the_next_joint_cannot_drop_it(outer):
    torch.manual_seed(0)
    model, x = Inner(outer), torch.randn(2, 3, 8, 8)
    make_zeroing_visible(model, x)
    space = trainonce.analyze(model, x, mode="erase")
    units = {g.name.split(".")[0]: g for g in space.groups if g.kind == "structure"
             and g.prunable}
    assert {"a", "c"} <= set(units), sorted(units)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for pair in itertools.combinations(sorted(units), 2):
        zero = torch.zeros(space.num_zigs, dtype=torch.bool)
        for name in pair:
            zero[units[name].offset : units[name].offset + units[name].size] = True
        why = space.invalid_reason(zero)
        if pair == ("a", "c"):
            assert why is not None and OUTERS[outer] in why, why
            continue
        assert why is None, (pair, why)
        space.set_zero(zero)
        trainonce.construct_subnet(model, space)  # verified against the zeroed model
        model.load_state_dict(state)
    check_slim(model, x, mode="erase", sparsities=(0.5,), seeds=(0, 1, 2))
