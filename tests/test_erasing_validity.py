"""Validity in erasing mode, property-tested on random DAG supernets: every set the selector or
the random draw returns keeps a path to the output, judged against an oracle that reasons on the
supernet's own description, and the slim model of a greedy erasure equals the zeroed model."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import trainonce
from trainonce.optim.budgets import Params
from trainonce.optim.targets import Pool, select_cost, select_count

OPS = ("conv3", "conv1", "skip", "pool")
C = 4


def make_op(kind: str) -> nn.Module:
    if kind == "conv3":
        return nn.Sequential(nn.Conv2d(C, C, 3, 1, 1, bias=False), nn.BatchNorm2d(C))
    if kind == "conv1":
        return nn.Sequential(nn.Conv2d(C, C, 1, bias=False), nn.BatchNorm2d(C))
    if kind == "pool":
        return nn.AvgPool2d(3, 1, 1)
    return nn.Identity()


class RandomSupernet(nn.Module):
    """``spec[j]``: the (source state, op kind) edges summed into node j; state 0 is the stem's
    output, node j is state j + 1; the last state feeds the head."""

    def __init__(self, spec: list[list[tuple[int, str]]]) -> None:
        super().__init__()
        self.spec = spec
        self.stem = nn.Sequential(nn.Conv2d(1, C, 3, 1, 1, bias=False), nn.BatchNorm2d(C))
        self.ops = nn.ModuleDict({f"n{j}_e{k}": make_op(kind) for j, edges in enumerate(spec)
                                  for k, (_, kind) in enumerate(edges)})
        self.head = nn.Linear(C, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [self.stem(x)]
        for j, edges in enumerate(self.spec):
            outs = [self.ops[f"n{j}_e{k}"](states[i]) for k, (i, _) in enumerate(edges)]
            total = outs[0]
            for o in outs[1:]:
                total = total + o
            states.append(total)
        return self.head(states[-1].mean((2, 3)))


@st.composite
def supernets(draw) -> list[list[tuple[int, str]]]:
    nodes = draw(st.integers(1, 4))
    spec = []
    for j in range(nodes):
        n_edges = draw(st.integers(1, 3))
        spec.append([(draw(st.integers(0, j)), draw(st.sampled_from(OPS)))
                     for _ in range(n_edges)])
    return spec


def oracle_valid(spec, removed: set[str]) -> bool:
    """A node whose edges are all removed (or carry a zero node through a skip) is zero; a zero
    node may only feed skips and removed ops, and the last node must not be zero."""
    zero = [False]
    for j, edges in enumerate(spec):
        live = False
        for k, (i, kind) in enumerate(edges):
            gone = f"n{j}_e{k}" in removed
            if zero[i] and not gone and kind != "skip":
                return False  # a live op would read a zero value
            live |= not gone and not zero[i]
        zero.append(not live)
    return not zero[-1]


def unit_names(space) -> dict[int, set[str]]:
    """ZIG -> the ops of each unit (a unit spans several ops when a chain feeds one sum)."""
    out = {}
    for g in space.groups:
        if g.prunable:
            inner = g.name.split(".")[1]
            out[g.offset] = set(inner.strip("{}").split(","))
    return out


SETTINGS = settings(max_examples=20, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(spec=supernets(), seed=st.integers(0, 1000))
def test_selection_and_random_draws_are_always_valid(spec, seed):
    model = RandomSupernet(spec)
    try:
        space = trainonce.analyze(model, torch.randn(2, 1, 6, 6), mode="erase")
    except trainonce.NothingPrunableError:
        return
    names = unit_names(space)
    gen = torch.Generator().manual_seed(seed)
    pool = Pool.of(space)
    for _ in range(3):
        score = torch.rand(space.num_zigs, generator=gen, dtype=torch.float64)
        already = torch.zeros(space.num_zigs, dtype=torch.bool)
        for chosen in (select_count(0.99, score, already, pool),
                       select_cost(space, Params(0.01), 0.01, score, already, pool)):
            removed = set().union(*(names[int(z)] for z in torch.nonzero(chosen).flatten()))
            assert space.valid(chosen) and oracle_valid(spec, removed)
            # greedy is maximal: any further unit would break validity
            for z, ops in names.items():
                if not chosen[z]:
                    assert not oracle_valid(spec, removed | ops)
    for z, ops in names.items():  # validity agrees with the oracle one unit at a time
        one = torch.zeros(space.num_zigs, dtype=torch.bool)
        one[z] = True
        assert space.valid(one) == oracle_valid(spec, ops)


@settings(max_examples=6, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(spec=supernets())
def test_greedy_erasure_slims_exactly(spec):
    model = RandomSupernet(spec).eval()
    x = torch.randn(2, 1, 6, 6)
    try:
        space = trainonce.analyze(model, x, mode="erase")
    except trainonce.NothingPrunableError:
        return
    score = torch.arange(space.num_zigs, dtype=torch.float64)
    zero = select_count(0.99, score, torch.zeros(space.num_zigs, dtype=torch.bool),
                        Pool.of(space))
    space.set_zero(zero)
    with torch.no_grad():
        want = model(x)
        got = trainonce.construct_subnet(model, space)(x)
    assert torch.allclose(got, want, rtol=0, atol=1e-5 * float(want.abs().max()) + 1e-7)
    assert sum(p.numel() for p in trainonce.construct_subnet(model, space).parameters()) == \
        space.num_params(~zero)


def test_an_invalid_set_is_refused_with_the_structures_named():
    model = RandomSupernet([[(0, "conv3"), (0, "conv1")]])
    space = trainonce.analyze(model, torch.randn(2, 1, 6, 6), mode="erase")
    everything = torch.ones(space.num_zigs, dtype=torch.bool)
    assert not space.valid(everything)
    space.set_zero(everything)
    with pytest.raises(ValueError, match=r"removing ops\.n0_e0\.\{0,1\}, ops\.n0_e1\.\{0,1\} "
                                         "leaves no input to add"):
        trainonce.construct_subnet(model, space)
