"""Erasing mode's part of the search space: one size-1 group per removal unit, the structure ZIG
of every atom a concat branch carries, the cost gates, and the validity check."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..graph.labels import Recorder
from ..graph.propagate import Propagation
from ..trace import Traced
from .costs import CostModel, CostTerm
from .search_space import Group, Member
from .structures import FlowGraph, Hierarchy, Structure, find_structures


@dataclass
class Erasing:
    groups: list[Group]
    structure_of_atom: torch.Tensor  # structure ZIG of every atom a concat branch carries, -1
    removable: list[tuple[Structure, int]]  # with their global ZIG ids
    hierarchy: Hierarchy
    notes: list[str] = field(default_factory=list)
    mode: str = "erase"

    @classmethod
    def find(cls, traced: Traced, prop: Propagation, roots: torch.Tensor, offset: int,
             exclude: list[str]) -> Erasing:
        rec = prop.rec
        b_atoms, _ = rec.blocked()
        blocked_root = torch.zeros(rec.next_atom, dtype=torch.bool)
        blocked_root[roots[b_atoms]] = True
        g = FlowGraph(traced.graph)
        found = find_structures(g, traced, prop, blocked_root, roots)
        shapes = {n: tuple(p.shape) for n, p in traced.model.named_parameters()}
        for s in found:
            _refuse_unfit(s, shapes, exclude)
        found.sort(key=lambda s: not s.removable)  # removable ones first, in graph order
        of_atom = torch.full((rec.next_atom,), -1, dtype=torch.long)
        groups, removable = [], []
        for k, s in enumerate(found):
            zig = offset + k
            members = [Member(p, 0, torch.arange(shapes[p][0]).reshape(1, -1))
                       for p in s.params if shapes[p]]
            if s.removable and s.channels.numel():
                gone = torch.isin(roots, roots[s.channels])
                of_atom[gone] = zig
                members += _slices_outside(prop, s, gone)
            if s.removable:
                removable.append((s, zig))
            groups.append(Group(s.name, 1, members, prunable=s.removable, reason=s.reason,
                                kind="structure"))
        notes = []
        if found:
            notes.append(f"erasing: {len(removable)} of {len(found)} structures are removable")
        return cls(groups, of_atom, removable, Hierarchy(g, removable),
                   notes)

    def costs(self, rec: Recorder, zig_of_atom: torch.Tensor) -> CostModel:
        """Every term with the structure ZIG of each position (concat branches) and, for the
        ops and parameters inside a structure, a one-position gate holding its ZIG."""
        gate: dict[str, int] = {}
        for s, zig in self.removable:
            gate.update({f"node:{n}": zig for n in s.nodes})
            gate.update({f"param:{p}": zig for p in s.params})
        terms = []
        for (kind, unit, vecs, _where), owner in zip(rec.costs, rec.cost_owners):
            zigs = [zig_of_atom[v] for v in vecs]
            outer = [self.structure_of_atom[v] for v in vecs]
            if owner in gate:
                zigs.append(torch.tensor([gate[owner]]))
                outer.append(torch.tensor([-1]))
            terms.append(CostTerm.from_vectors(kind, unit, zigs, outer))
        return CostModel(terms)


def _refuse_unfit(s: Structure, shapes: dict[str, tuple], exclude: list[str]) -> None:
    if not s.removable:
        return
    hit = [p for p in s.params if any(p == e or p.startswith(e + ".") for e in exclude)]
    if hit:
        s.removable, s.reason = False, f"excluded by the user ('{hit[0]}')"
    elif any(not shapes[p] for p in s.params):
        s.removable, s.reason = False, "it holds a 0-dim (scalar) parameter"


def _slices_outside(prop: Propagation, s: Structure, gone: torch.Tensor) -> list[Member]:
    """The positions of parameters outside ``s`` that carry its concat channels (the
    consumer's input channels): they leave with the branch."""
    out = []
    inside = set(s.params)
    for name, dims in prop.param_atoms.items():
        if name in inside:
            continue
        for d, atoms in dims.items():
            pos = torch.nonzero(gone[atoms]).flatten()
            if pos.numel():
                out.append(Member(name, d, pos.reshape(1, -1)))
    return out
