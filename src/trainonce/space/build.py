"""Stage 2 of the pipeline: `analyze` turns the labelled graph into a `SearchSpace`.

Atoms connected by couplings form one ZIG; a ZIG touching a pinned atom is kept whole (with the
first reason recorded). ZIGs owning the same slices of the same parameters form one group.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import nn

from ..graph.components import components
from ..graph.families import kept_whole
from ..graph.labels import Labels, Recorder, spans
from ..graph.propagate import Propagation, pin_outputs, propagate
from ..trace import Traced, trace
from .analysis import Analysis
from .costs import CostModel, CostTerm
from .erasing import Erasing
from .search_space import Group, Member, SearchSpace, check_align

_NO_REASON = 1 << 62


class NothingPrunableError(ValueError):
    """The model has no zero-invariant group that may be removed."""


MODES = ("prune", "erase", "both")


def analyze(model: nn.Module, example_inputs: Any, *, mode: str = "prune",
            exclude: list[str] | None = None, align: int = 1) -> SearchSpace:
    """Find every zero-invariant group of ``model`` from one run on ``example_inputs``.

    ``example_inputs``: a tensor, a tuple of positional args, or a dict of keyword args.
    ``mode``: "prune" (channel groups: channels, heads, neurons), "erase" (whole structures:
    residual branches, candidate ops, concat branches, transformer sublayers; OTOv3's erasing
    mode) or "both" (each structure and the channels inside it).
    ``exclude``: module or parameter names whose parameters must be kept whole.
    ``align``: every selection (optimizers, `SearchSpace.zero_random_groups`, ATO's freeze)
    keeps a multiple of ``align`` channels, or all, in each channel group, so every width of
    the slim model that such groups set is a multiple of it; heads, KV groups and grouped-conv
    groups stay whole units, a structure may still go entirely, and a group with fewer than
    ``align`` channels is kept whole. 1: no alignment.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    _check_exclude(model, exclude)
    check_align(align)
    traced = trace(model, example_inputs)
    prop = propagate(traced, exclude, kept_whole(model))
    pin_outputs(traced, prop)
    roots = _roots(prop)
    space = _assemble(traced, prop, roots, mode, exclude or [], align)
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


_RECTANGULAR = "a tensor that must stay rectangular"


class _Joint(NamedTuple):
    """Every element of every axis that spans several dims, flattened; each axis is seen with
    its dims left-padded to ``ndim`` (so dim ``d`` is the same for all and order is kept)."""

    atoms: torch.Tensor  # [N] atom of each element
    axis: torch.Tensor  # [N] axis each element belongs to
    partner: torch.Tensor  # [ndim, N] element with the same coordinates but 0 along dim d
    count: int  # number of axes
    ndim: int


def _roots(prop: Propagation) -> torch.Tensor:
    """Components of the coupling graph, refined until every tensor can be cut rectangularly:
    an axis spanning several dims must vary along one dim only (else coarsen the others).

    Rounds see the roots of the previous round. An axis is re-examined only when the roots of
    its atoms changed (otherwise it would decide the same again), and each round's new edges
    are added to the previous components. Stops when a round changes no root: an axis that
    still varies then holds an unremovable atom 0, and its coarsening has pinned the rest."""
    rec = prop.rec
    roots = components(rec.next_atom, *rec.edges())
    joint = _joint_axes(prop)
    dirty = torch.ones(joint.count, dtype=torch.bool)
    while bool(dirty.any()):
        a, b = _coarsen_pairs(joint, _to_coarsen(joint, roots, dirty))
        if a.numel() == 0:
            break
        rec.union(a, b, _RECTANGULAR)
        merge = (a != 0) & (b != 0)  # pairs with atom 0 were pinned by `union`, not merged
        new = components(rec.next_atom, a[merge], b[merge], parent=roots)
        moved = new != roots
        dirty = torch.bincount(joint.axis[moved[joint.atoms]], minlength=joint.count) > 0
        roots = new
    return roots


def _joint_axes(prop: Propagation) -> _Joint:
    """Flatten the joint axes one shape at a time (axes of one shape share their layout)."""
    by_shape: dict[tuple[int, ...], list[torch.Tensor]] = {}
    for val in prop.labels.values():
        for x in val if isinstance(val, list) else [val]:
            for a in x.axes if isinstance(x, Labels) else []:
                if len(spans(a)) > 1:
                    by_shape.setdefault(tuple(a.shape), []).append(a)
    ndim = max((len(shape) for shape in by_shape), default=0)
    atoms, partner, sizes, offset = [], [], [], 0
    for shape, group in by_shape.items():
        padded = (1,) * (ndim - len(shape)) + shape
        numel = math.prod(padded)
        flat = torch.arange(numel)
        stride = torch.tensor([math.prod(padded[d + 1:]) for d in range(ndim)])
        to_zero = flat - torch.stack(torch.unravel_index(flat, padded)) * stride[:, None]
        starts = offset + numel * torch.arange(len(group))
        partner.append((starts[None, :, None] + to_zero[:, None, :]).reshape(ndim, -1))
        atoms.append(torch.stack(group).reshape(-1))
        sizes += [numel] * len(group)
        offset += numel * len(group)
    axis = torch.repeat_interleave(torch.arange(len(sizes)),
                                   torch.tensor(sizes, dtype=torch.long))
    if not atoms:  # no joint axis at all
        return _Joint(axis, axis, axis.reshape(0, 0), 0, 0)
    return _Joint(torch.cat(atoms), axis, torch.cat(partner, 1), len(sizes), ndim)


def _to_coarsen(joint: _Joint, roots: torch.Tensor, dirty: torch.Tensor) -> torch.Tensor:
    """[axes, ndim] dims to coarsen: for every dirty axis whose roots vary along 2+ dims, all
    of them but the one with the most distinct roots on its line through the origin (the
    first such dim on ties)."""
    r = roots[joint.atoms]
    mine = dirty[joint.axis]
    varying = torch.zeros(joint.count, joint.ndim, dtype=torch.bool)
    for d in range(joint.ndim):
        differ = mine & (r != r[joint.partner[d]])
        varying[:, d] = torch.bincount(joint.axis[differ], minlength=joint.count) > 0
    need = varying.sum(1) >= 2
    if not bool(need.any()):
        return torch.zeros_like(varying)
    off_origin = joint.partner != torch.arange(joint.atoms.numel())  # [ndim, N]
    n_off = off_origin.sum(0)
    distinct = torch.full((joint.count, joint.ndim), -1, dtype=torch.long)
    for d in range(joint.ndim):
        on_line = need[joint.axis] & (n_off == off_origin[d].long())
        keys = torch.unique(joint.axis[on_line] * roots.numel() + r[on_line])
        distinct[:, d] = torch.bincount(keys // roots.numel(), minlength=joint.count)
    keep = torch.where(varying, distinct, -1).argmax(1)  # argmax: first of the maxima
    others = torch.arange(joint.ndim) != keep[:, None]
    return varying & need[:, None] & others


def _coarsen_pairs(joint: _Joint, coarsen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Atom pairs that coarsen each axis dim after dim (ascending), as `Recorder.coarsen` on
    the axis narrowed by the dims already done: after a dim, only its slice 0 goes on."""
    a, b = [], []
    done = torch.zeros(joint.atoms.numel(), dtype=torch.bool)
    idx = torch.arange(joint.atoms.numel())
    for d in range(joint.ndim):
        this = coarsen[joint.axis, d]
        sel = this & ~done
        a.append(joint.atoms[sel])
        b.append(joint.atoms[joint.partner[d][sel]])
        done |= this & (joint.partner[d] != idx)
    return torch.cat(a), torch.cat(b)


def _stable_order(*keys: torch.Tensor) -> torch.Tensor:
    """Permutation sorting by ``keys[0]``, then ``keys[1]``... (lexicographic, stable)."""
    order = torch.arange(keys[0].numel())
    for k in reversed(keys):
        order = order[torch.argsort(k[order], stable=True)]
    return order


class _Positions(NamedTuple):
    """Every position of every parameter dim, flattened: its dim, its index, its ZIG."""

    pds: list[tuple[str, int, torch.Tensor]]  # (parameter, dim, atoms along it)
    pd: torch.Tensor  # parameter-dim number of each position
    index: torch.Tensor  # index of each position along its dim
    zig: torch.Tensor  # local ZIG number of each position (into ``zig_roots``)
    zig_roots: torch.Tensor  # root atom of each ZIG, ascending


class _Layout(NamedTuple):
    """Where ZIGs land: group of each ZIG, global id of each ZIG, group sizes and reasons."""

    group: torch.Tensor  # group (final order) of every ZIG
    zig_id: torch.Tensor  # global ZIG id of every ZIG
    sizes: torch.Tensor  # ZIGs per group
    reason: torch.Tensor  # per group: smallest reason id of its ZIGs, _NO_REASON if prunable


def _assemble(traced: Traced, prop: Propagation, roots: torch.Tensor, mode: str = "prune",
              exclude: list[str] | None = None, align: int = 1) -> SearchSpace:
    """Group ZIGs by exact structure, all positions at once: one sort, then one slice per
    member. Structure groups (erasing mode) come after the channel groups."""
    pos = _positions(prop, roots)
    reason = _zig_reasons(prop.rec, roots, pos.zig_roots)
    row_zig, row_pd, count = _rows(pos)
    blocked = reason != _NO_REASON
    group_of_zig = group_by_structure(row_zig, row_pd, count, blocked)
    layout = _layout(group_of_zig, pos, reason)
    groups = _groups(pos, layout, prop.rec.reasons)
    zig_of_root = torch.full((prop.rec.next_atom,), -1, dtype=torch.long)
    zig_of_root[pos.zig_roots[~blocked]] = layout.zig_id[~blocked]
    if mode == "prune":
        return _search_space(traced, prop, groups, zig_of_root[roots], align=align)
    if mode == "erase":
        groups, zig_of_root = [], torch.full_like(zig_of_root, -1)
    return _with_structures(traced, prop, roots, groups, zig_of_root[roots], exclude or [], mode,
                            align)


def _positions(prop: Propagation, roots: torch.Tensor) -> _Positions:
    pds = [(name, d, ids) for name, dims in prop.param_atoms.items() for d, ids in dims.items()]
    lens = torch.tensor([ids.numel() for _, _, ids in pds], dtype=torch.long)
    pd = torch.repeat_interleave(torch.arange(len(pds)), lens)
    index = torch.arange(int(lens.sum())) - (torch.cumsum(lens, 0) - lens)[pd]
    zig_roots, zig = torch.unique(roots[torch.cat([ids for _, _, ids in pds])],
                                  return_inverse=True)
    return _Positions(pds, pd, index, zig, zig_roots)


def _zig_reasons(rec: Recorder, roots: torch.Tensor, zig_roots: torch.Tensor) -> torch.Tensor:
    """Per ZIG, the first reason (smallest id) any of its atoms is pinned for."""
    reason_of_root = torch.full((rec.next_atom,), _NO_REASON, dtype=torch.long)
    b_atoms, b_rids = rec.blocked()
    if b_atoms.numel():
        reason_of_root.scatter_reduce_(0, roots[b_atoms], b_rids, reduce="amin")
    return reason_of_root[zig_roots]


def _rows(pos: _Positions) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ZIG, parameter dim, number of positions) for every dim a ZIG owns positions of,
    sorted by ZIG then dim."""
    n_pd = len(pos.pds)
    rows, count = torch.unique(pos.zig * n_pd + pos.pd, return_counts=True)
    return rows // n_pd, rows % n_pd, count


def group_by_structure(row_zig: torch.Tensor, row_pd: torch.Tensor, count: torch.Tensor,
                       blocked: torch.Tensor) -> torch.Tensor:
    """Group number of every ZIG: two ZIGs share one iff they own the same number of positions
    in exactly the same parameter dims and are both pinned or both prunable (an exact key).

    Rows are (ZIG, dim, count), sorted by ZIG then dim. A hash of each ZIG's row sequence
    proposes the groups; every ZIG is then compared row by row with the first ZIG of its
    group, and only if one differs (a collision) are the groups rebuilt place by place."""
    length = torch.bincount(row_zig, minlength=blocked.numel())
    start = torch.cumsum(length, 0) - length
    place = torch.arange(row_zig.numel()) - start[row_zig]  # row's place inside its ZIG
    _, pair = torch.unique(row_pd * (int(count.max()) + 1) + count, return_inverse=True)
    base = length * 2 + blocked.long()
    group = _hashed_groups(row_zig, place, pair, base)
    zig = torch.arange(group.numel())
    first = torch.full_like(group, group.numel()).scatter_reduce_(0, group, zig, reduce="amin")
    like_first = pair == pair[start[first[group][row_zig]] + place]  # same length: in range
    if bool(like_first.all()):
        return group
    return _groups_place_by_place(row_zig, place, pair, base)


_HASH_PRIME = (1 << 31) - 1


def _hashed_groups(row_zig: torch.Tensor, place: torch.Tensor, pair: torch.Tensor,
                   base: torch.Tensor) -> torch.Tensor:
    """Proposed groups: equal ``base`` and equal polynomial hash of the row sequence."""
    mult = torch.tensor([pow(1_000_003, j, _HASH_PRIME) for j in range(int(place.max()) + 1)])
    term = (pair + 1) * mult[place] % _HASH_PRIME
    h = torch.zeros_like(base).index_add_(0, row_zig, term) % _HASH_PRIME
    _, b = torch.unique(base, return_inverse=True)
    return torch.unique(b * _HASH_PRIME + h, return_inverse=True)[1]


def _groups_place_by_place(row_zig: torch.Tensor, place: torch.Tensor, pair: torch.Tensor,
                           base: torch.Tensor) -> torch.Tensor:
    """Exact groups without hashing: a ZIG's key starts as ``base`` and absorbs its rows one
    place at a time; step ``j`` renumbers (key, j-th row) for the ZIGs that have a j-th row
    with ids never used before, so keys stay exact and small (one step per place)."""
    n_pair = int(pair.max()) + 1
    key = base.clone()
    next_id = int(base.max()) + 1
    for rows in torch.split(torch.argsort(place, stable=True), torch.bincount(place).tolist()):
        zigs = row_zig[rows]
        _, fresh = torch.unique(key[zigs] * n_pair + pair[rows], return_inverse=True)
        key[zigs] = next_id + fresh
        next_id += int(fresh.max()) + 1
    return torch.unique(key, return_inverse=True)[1]


def _layout(group_of_zig: torch.Tensor, pos: _Positions, reason: torch.Tensor) -> _Layout:
    """Groups in order: prunable first, then by where their first position appears (parameter,
    dim, index); ZIGs numbered by group, then by root atom."""
    n_groups = int(group_of_zig.max()) + 1
    nz = group_of_zig.numel()
    first = torch.full((n_groups,), pos.pd.numel(), dtype=torch.long).scatter_reduce_(
        0, group_of_zig[pos.zig], torch.arange(pos.pd.numel()), reduce="amin")
    g_blocked = torch.zeros(n_groups, dtype=torch.long).scatter_(
        0, group_of_zig, (reason != _NO_REASON).long())
    rank = torch.empty(n_groups, dtype=torch.long)
    rank[_stable_order(g_blocked, first)] = torch.arange(n_groups)
    gz = rank[group_of_zig]
    sizes = torch.bincount(gz, minlength=n_groups)
    zig_id = torch.empty(nz, dtype=torch.long)
    zig_id[_stable_order(gz, pos.zig_roots)] = torch.arange(nz)
    g_reason = torch.full((n_groups,), _NO_REASON, dtype=torch.long).scatter_reduce_(
        0, gz, reason, reduce="amin")
    return _Layout(gz, zig_id, sizes, g_reason)


def _groups(pos: _Positions, layout: _Layout, reasons: list[str]) -> list[Group]:
    """Every position sorted by (group, parameter dim, ZIG, index): members are slices."""
    starts = torch.cumsum(layout.sizes, 0) - layout.sizes
    local = layout.zig_id - starts[layout.group]
    pg, pl = layout.group[pos.zig], local[pos.zig]
    order = _stable_order(pg, pos.pd, pl, pos.index)
    pg, pp, index = pg[order], pos.pd[order], pos.index[order]
    seg = torch.nonzero((pg[1:] != pg[:-1]) | (pp[1:] != pp[:-1])).flatten() + 1
    bounds = [0, *seg.tolist(), pg.numel()]
    sizes = layout.sizes.tolist()
    members: list[list[Member]] = [[] for _ in sizes]
    for a, b in zip(bounds[:-1], bounds[1:]):
        g = int(pg[a])
        name, d, _ = pos.pds[int(pp[a])]
        members[g].append(Member(name, d, index[a:b].reshape(sizes[g], -1)))
    groups = []
    for g, reason in enumerate(layout.reason.tolist()):
        m0 = members[g][0]
        more = f" +{len(members[g]) - 1}" if len(members[g]) > 1 else ""
        prunable = reason == _NO_REASON
        groups.append(Group(f"{m0.param}[{m0.dim}]{more}", sizes[g], members[g],
                            prunable=prunable, reason=None if prunable else reasons[reason]))
    return groups


def _search_space(traced: Traced, prop: Propagation, groups: list[Group],
                  zig_of_atom: torch.Tensor, erasing: Erasing | None = None,
                  align: int = 1) -> SearchSpace:
    rec = prop.rec
    if erasing is None:
        costs = CostModel([
            CostTerm.from_vectors(kind, unit, [zig_of_atom[v] for v in vecs])
            for kind, unit, vecs, _where in rec.costs
        ])
    else:
        costs = erasing.costs(rec, zig_of_atom)
    notes = list(prop.warnings)
    unseen = [n for n, _ in traced.model.named_parameters() if n not in prop.param_atoms]
    if unseen:
        notes.append(f"{len(unseen)} parameters are not used by the traced (eval-mode) forward, "
                     f"e.g. '{unseen[0]}' (training-only heads?): they are left untouched, and a "
                     "slim model may not run them")
    buffer_slices = {name: {d: zig_of_atom[ids] for d, ids in dims.items()}
                     for name, dims in prop.buffer_atoms.items()}
    analysis = Analysis(traced, prop, zig_of_atom)
    buffer_outer = {}
    if erasing is not None:
        buffer_outer = {name: {d: erasing.structure_of_atom[ids] for d, ids in dims.items()}
                        for name, dims in prop.buffer_atoms.items()}
        notes += erasing.notes
        analysis.structure_of_atom = erasing.structure_of_atom
        analysis.structures = erasing.removable
        analysis.hierarchy = erasing.hierarchy
    return SearchSpace(traced.model, groups, costs, notes=notes, buffer_slices=buffer_slices,
                       buffer_outer=buffer_outer, analysis=analysis,
                       mode="prune" if erasing is None else erasing.mode, align=align)


def _with_structures(traced: Traced, prop: Propagation, roots: torch.Tensor,
                     groups: list[Group], zig_of_atom: torch.Tensor, exclude: list[str],
                     mode: str, align: int = 1) -> SearchSpace:
    erasing = Erasing.find(traced, prop, roots, sum(g.size for g in groups), exclude)
    erasing.mode = mode
    return _search_space(traced, prop, groups + erasing.groups, zig_of_atom, erasing, align)


def _nothing_prunable_message(space: SearchSpace) -> str:
    reasons: dict[str, int] = {}
    for g in space.groups:
        reasons[g.reason or "?"] = reasons.get(g.reason or "?", 0) + g.size
    top = sorted(reasons.items(), key=lambda kv: -kv[1])[:5]
    detail = "; ".join(f"{n} channels: {r}" for r, n in top) or "the model has no parameters"
    if space.groups and all(g.kind == "structure" for g in space.groups):
        return ("nothing in this model can be erased: no structure is removable "
                f"({detail}). Try mode='prune' for channels.")
    if not space.groups:
        return ("nothing in this model can be erased: it has no branch whose output only "
                "enters a sum or a concat (a residual branch, a candidate op, a sublayer); "
                "try mode='prune' for channels")
    return ("nothing in this model can be pruned: every channel is kept whole "
            f"({detail}). Check `exclude`, or whether the model has prunable layers at all.")
