"""Stage 2 of the pipeline: `analyze` turns the labelled graph into a `SearchSpace`.

Atoms connected by couplings form one ZIG; a ZIG touching a pinned atom is kept whole (with the
first reason recorded). ZIGs owning the same slices of the same parameters form one group.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..graph.components import components
from ..graph.labels import Labels, spans
from ..graph.propagate import Propagation, pin_outputs, propagate
from ..trace import Traced, trace
from .analysis import Analysis
from .costs import CostModel, CostTerm
from .search_space import Group, Member, SearchSpace

_NO_REASON = 1 << 62


class NothingPrunableError(ValueError):
    """The model has no zero-invariant group that may be removed."""


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


def _stable_order(*keys: torch.Tensor) -> torch.Tensor:
    """Permutation sorting by ``keys[0]``, then ``keys[1]``... (lexicographic, stable)."""
    order = torch.arange(keys[0].numel())
    for k in reversed(keys):
        order = order[torch.argsort(k[order], stable=True)]
    return order


def _assemble(traced: Traced, prop: Propagation, roots: torch.Tensor) -> SearchSpace:
    """Group ZIGs by signature, all positions at once: one sort, then one slice per member."""
    rec = prop.rec
    reason_of_root = torch.full((rec.next_atom,), _NO_REASON, dtype=torch.long)
    b_atoms, b_rids = rec.blocked()
    if b_atoms.numel():
        reason_of_root.scatter_reduce_(0, roots[b_atoms], b_rids, reduce="amin")

    pds = [(name, d, ids) for name, dims in prop.param_atoms.items() for d, ids in dims.items()]
    n_pd = len(pds)
    lens = torch.tensor([ids.numel() for _, _, ids in pds], dtype=torch.long)
    pd_of_pos = torch.repeat_interleave(torch.arange(n_pd), lens)
    pos_in_pd = torch.arange(int(lens.sum())) - (torch.cumsum(lens, 0) - lens)[pd_of_pos]
    zig_roots, zig_of_pos = torch.unique(roots[torch.cat([ids for _, _, ids in pds])],
                                         return_inverse=True)
    nz = zig_roots.numel()

    # signature of a ZIG: how many positions it owns in each parameter dim (hashed), and
    # whether it is pinned; equal signatures -> one group
    rows, count = torch.unique(zig_of_pos * n_pd + pd_of_pos, return_counts=True)
    row_zig, row_pd = rows // n_pd, rows % n_pd
    weights = torch.randint(1, 1 << 40, (n_pd,), generator=torch.Generator().manual_seed(0))
    sig = torch.zeros(nz, dtype=torch.long).index_add_(0, row_zig, weights[row_pd] * (count + 1))
    reason = reason_of_root[zig_roots]
    blocked = reason != _NO_REASON
    _, group_of_zig = torch.unique(sig * 2 + blocked.long(), return_inverse=True)
    n_groups = int(group_of_zig.max()) + 1

    # groups in order: prunable first, then by where their first parameter appears
    first_pd = torch.full((n_groups,), n_pd, dtype=torch.long).scatter_reduce_(
        0, group_of_zig[row_zig], row_pd, reduce="amin")
    g_blocked = torch.zeros(n_groups, dtype=torch.bool).scatter_(0, group_of_zig, blocked)
    rank = torch.empty(n_groups, dtype=torch.long)
    rank[_stable_order(g_blocked.long(), first_pd)] = torch.arange(n_groups)
    gz = rank[group_of_zig]
    sizes = torch.bincount(gz, minlength=n_groups)
    starts = torch.cumsum(sizes, 0) - sizes
    zig_id = torch.empty(nz, dtype=torch.long)
    zig_id[_stable_order(gz, zig_roots)] = torch.arange(nz)  # global id, by group then root
    local = zig_id - starts[gz]
    g_reason = torch.full((n_groups,), _NO_REASON, dtype=torch.long).scatter_reduce_(
        0, gz, reason, reduce="amin")

    # every position, sorted by (group, parameter dim, ZIG, position): members are slices
    pg, pl = gz[zig_of_pos], local[zig_of_pos]
    order = _stable_order(pg, pd_of_pos, pl, pos_in_pd)
    pg, pp, pos = pg[order], pd_of_pos[order], pos_in_pd[order]
    seg = torch.nonzero((pg[1:] != pg[:-1]) | (pp[1:] != pp[:-1])).flatten() + 1
    bounds = [0] + seg.tolist() + [pg.numel()]
    members: list[list[Member]] = [[] for _ in range(n_groups)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        g, j = int(pg[a]), int(pp[a])
        name, d, _ = pds[j]
        members[g].append(Member(name, d, pos[a:b].reshape(int(sizes[g]), -1)))
    groups = []
    for g in range(n_groups):
        m0 = members[g][0]
        more = f" +{len(members[g]) - 1}" if len(members[g]) > 1 else ""
        prunable = int(g_reason[g]) == _NO_REASON
        groups.append(Group(f"{m0.param}[{m0.dim}]{more}", int(sizes[g]), members[g],
                            prunable=prunable,
                            reason=None if prunable else rec.reasons[int(g_reason[g])]))

    zig_of_root = torch.full((rec.next_atom,), -1, dtype=torch.long)
    ok = ~blocked
    zig_of_root[zig_roots[ok]] = zig_id[ok]
    zig_of_atom = zig_of_root[roots]
    costs = CostModel([
        CostTerm.from_vectors(kind, unit, [zig_of_atom[v] for v in vecs], where)
        for kind, unit, vecs, where in rec.costs
    ])
    notes = list(prop.warnings)
    unseen = [n for n, _ in traced.model.named_parameters() if n not in prop.param_atoms]
    if unseen:
        notes.append(f"{len(unseen)} parameters are not used by the traced (eval-mode) forward, "
                     f"e.g. '{unseen[0]}' (training-only heads?): they are left untouched, and a "
                     "slim model may not run them")
    buffer_slices = {name: {d: zig_of_atom[ids] for d, ids in dims.items()}
                     for name, dims in prop.buffer_atoms.items()}
    return SearchSpace(traced.model, groups, costs, notes=notes, buffer_slices=buffer_slices,
                       analysis=Analysis(traced, prop, zig_of_atom))


def _nothing_prunable_message(space: SearchSpace) -> str:
    reasons: dict[str, int] = {}
    for g in space.groups:
        reasons[g.reason or "?"] = reasons.get(g.reason or "?", 0) + g.size
    top = sorted(reasons.items(), key=lambda kv: -kv[1])[:5]
    detail = "; ".join(f"{n} channels: {r}" for r, n in top) or "the model has no parameters"
    return ("nothing in this model can be pruned: every channel is kept whole "
            f"({detail}). Check `exclude`, or whether the model has prunable layers at all.")
