"""Stage 2 of the pipeline: `analyze` turns the labelled graph into a `SearchSpace`.

Atoms connected by couplings form one ZIG; a ZIG touching a pinned atom is kept whole (with the
first reason recorded). ZIGs owning the same slices of the same parameters form one group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..graph.components import components
from ..graph.labels import Labels, spans
from ..graph.propagate import Propagation, pin_outputs, propagate
from ..trace import Traced, trace
from .costs import CostModel, CostTerm
from .search_space import Group, Member, SearchSpace

_NO_REASON = 1 << 62


class NothingPrunableError(ValueError):
    """The model has no zero-invariant group that may be removed."""


@dataclass
class Analysis:
    """What construction needs beyond the groups: the trace and each atom's ZIG."""

    traced: Traced
    prop: Propagation
    zig_of_atom: torch.Tensor  # global ZIG id of every atom, -1 if none or kept whole


def analyze(model: nn.Module, example_inputs: Any, *, exclude: list[str] | None = None
            ) -> SearchSpace:
    """Find every zero-invariant group of ``model`` from one run on ``example_inputs``.

    ``example_inputs``: a tensor, a tuple of positional args, or a dict of keyword args.
    ``exclude``: module or parameter names whose parameters must be kept whole.
    """
    _check_exclude(model, exclude)
    traced = trace(model, example_inputs)
    prop = propagate(traced, exclude)
    pin_outputs(traced, prop)
    roots = _roots(prop)
    space = _assemble(traced, prop, roots)
    if space.num_prunable_zigs == 0:
        raise NothingPrunableError(_nothing_prunable_message(space))
    return space


def _check_exclude(model: nn.Module, exclude: list[str] | None) -> None:
    if not exclude:
        return
    names = {n for n, _ in model.named_modules()} | {n for n, _ in model.named_parameters()}
    unknown = [e for e in exclude if e not in names]
    if unknown:
        raise ValueError(f"exclude names not found in the model: {unknown}")


def _roots(prop: Propagation) -> torch.Tensor:
    """Components of the coupling graph, refined until every tensor can be cut rectangularly:
    an axis spanning several dims must vary along one dim only (else coarsen the others)."""
    rec = prop.rec
    joint = []
    for val in prop.labels.values():
        for x in val if isinstance(val, list) else [val]:
            if isinstance(x, Labels):
                joint.extend(a for a in x.axes if len(spans(a)) > 1)
    while True:
        roots = components(rec.next_atom, *rec.edges())
        changed = False
        for ax in joint:
            r = roots[ax]
            varying = [d for d in spans(ax) if not bool((r == r.narrow(d, 0, 1)).all())]
            if len(varying) < 2:
                continue

            def distinct(d: int, r=r) -> int:
                idx = tuple(slice(None) if k == d else 0 for k in range(r.dim()))
                return int(torch.unique(r[idx]).numel())

            keep = max(varying, key=distinct)
            for d in varying:
                if d != keep:
                    ax = rec.coarsen(ax, d, "a tensor that must stay rectangular")
            changed = True
        if not changed:
            return roots


def _assemble(traced: Traced, prop: Propagation, roots: torch.Tensor) -> SearchSpace:
    rec = prop.rec
    reason_of_root = torch.full((rec.next_atom,), _NO_REASON, dtype=torch.long)
    b_atoms, b_rids = rec.blocked()
    if b_atoms.numel():
        reason_of_root.scatter_reduce_(0, roots[b_atoms], b_rids, reduce="amin")

    pds = [(name, d, ids) for name, dims in prop.param_atoms.items() for d, ids in dims.items()]
    rows_r, rows_p, rows_c = [], [], []
    for j, (_, _, ids) in enumerate(pds):
        u, c = torch.unique(roots[ids], return_counts=True)
        rows_r.append(u)
        rows_p.append(torch.full_like(u, j))
        rows_c.append(c)
    R, P, C = torch.cat(rows_r), torch.cat(rows_p), torch.cat(rows_c)
    zig_roots, inv = torch.unique(R, return_inverse=True)
    weights = torch.randint(1, 1 << 40, (len(pds),), generator=torch.Generator().manual_seed(0))
    key = torch.zeros(zig_roots.numel(), dtype=torch.long).index_add_(0, inv, weights[P] * (C + 1))
    blocked = reason_of_root[zig_roots] != _NO_REASON
    key = key * 2 + blocked.long()
    _, group_of_zig = torch.unique(key, return_inverse=True)

    # order groups: prunable first, then by where their first parameter appears
    first_pd = torch.full((int(group_of_zig.max()) + 1,), len(pds), dtype=torch.long)
    first_pd.scatter_reduce_(0, group_of_zig[inv], P, reduce="amin")
    g_blocked = torch.zeros_like(first_pd, dtype=torch.bool).scatter_(0, group_of_zig, blocked)
    order = sorted(range(first_pd.numel()), key=lambda g: (bool(g_blocked[g]), int(first_pd[g])))

    zig_of_root = torch.full((rec.next_atom,), -1, dtype=torch.long)
    row_group = group_of_zig[inv]
    groups, offset = [], 0
    for g in order:
        zr = zig_roots[group_of_zig == g]  # sorted
        prunable = not bool(g_blocked[g])
        members = []
        for j in torch.unique(P[row_group == g]).tolist():
            name, d, ids = pds[j]
            r = roots[ids]
            pos = torch.nonzero(torch.isin(r, zr)).flatten()
            local = torch.searchsorted(zr, r[pos])
            pos = pos[torch.argsort(local * (ids.numel() + 1) + pos)]
            members.append(Member(name, d, pos.reshape(zr.numel(), -1)))
        reason = None
        if not prunable:
            rid = int(reason_of_root[zr].min())
            reason = rec.reasons[rid]
        else:
            zig_of_root[zr] = torch.arange(offset, offset + zr.numel())
        m0 = members[0]
        more = f" +{len(members) - 1}" if len(members) > 1 else ""
        groups.append(Group(f"{m0.param}[{m0.dim}]{more}", zr.numel(), members,
                            prunable=prunable, reason=reason))
        offset += zr.numel()

    zig_of_atom = zig_of_root[roots]
    costs = CostModel([
        CostTerm.from_vectors(kind, unit, [zig_of_atom[v] for v in vecs], where)
        for kind, unit, vecs, where in rec.costs
    ])
    space = SearchSpace(traced.model, groups, costs, notes=list(prop.warnings))
    space.buffer_slices = {
        name: {d: zig_of_atom[ids] for d, ids in dims.items()}
        for name, dims in prop.buffer_atoms.items()
    }
    space.analysis = Analysis(traced, prop, zig_of_atom)
    return space


def _nothing_prunable_message(space: SearchSpace) -> str:
    reasons: dict[str, int] = {}
    for g in space.groups:
        reasons[g.reason or "?"] = reasons.get(g.reason or "?", 0) + g.size
    top = sorted(reasons.items(), key=lambda kv: -kv[1])[:5]
    detail = "; ".join(f"{n} channels: {r}" for r, n in top) or "the model has no parameters"
    return ("nothing in this model can be pruned: every channel is kept whole "
            f"({detail}). Check `exclude`, or whether the model has prunable layers at all.")
