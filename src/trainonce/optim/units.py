"""Removal units: the candidates of a selection in preference order, as blocks that keep every
aligned channel group at a multiple of its alignment (``analyze(align=m)``).

Without alignment a unit is one ZIG. In a group aligned to ``m`` the alive ZIGs, least
preferred first, form blocks: the first takes the group's kept count down to a multiple of
``m``, every later one takes ``m`` more, and the last ``m`` ZIGs are never a unit (a group keeps
at least one block). A group's blocks go in order; the ``rank`` of a unit says which it is.
Vectorised: no Python loop over groups or ZIGs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .targets import Pool


@dataclass(frozen=True)
class Units:
    """``zigs``: ZIG ids in removal order; unit ``j`` is ``zigs[starts[j]:ends[j]]``.
    ``group``: the nesting group of each unit (an aligned channel group; a free unit has its
    own), ``rank``: its place in that group's removal sequence (free units: 0)."""

    zigs: torch.Tensor
    ends: torch.Tensor
    group: torch.Tensor
    rank: torch.Tensor

    @property
    def count(self) -> int:
        return int(self.ends.numel())

    @property
    def starts(self) -> torch.Tensor:
        return torch.cat([torch.zeros(1, dtype=torch.long), self.ends[:-1]])

    @property
    def sizes(self) -> torch.Tensor:
        return self.ends - self.starts

    def prefix(self, n: int) -> torch.Tensor:
        """The ZIGs of the first ``n`` units."""
        return self.zigs[: int(self.ends[n - 1])] if n > 0 else self.zigs[:0]

    def unit(self, j: int) -> torch.Tensor:
        return self.zigs[int(self.starts[j]) : int(self.ends[j])]

    def zig_count(self, n: int) -> int:
        return int(self.ends[n - 1]) if n > 0 else 0


def removal_units(pool: Pool, key: torch.Tensor, already: torch.Tensor,
                  eligible: torch.Tensor | None = None) -> Units:
    """The units of ``pool`` not in ``already``, by ascending ``key`` (float64 per ZIG; a
    unit's key is the mean of its ZIGs', made non-decreasing along its group's sequence).
    ``eligible``: a further restriction of the free ZIGs (e.g. those with a cost); the
    structures whose addition the pool's ``admissible`` hook rejects are left out."""
    key = key.detach().double().cpu()
    already = already.bool().cpu()
    alive = pool.prunable & ~already
    if eligible is not None:
        alive &= eligible.bool().cpu()
    align = pool.zig_align()
    aligned = alive & (align > 1)
    free = pool.candidates(key, already | aligned) & alive
    f_idx = torch.nonzero(free).flatten()
    a_zigs, a_ends, a_group, a_rank, a_key = _blocks(pool, key, already, aligned, align)
    n_free = f_idx.numel()
    # every unit: its key, its ZIGs; free units are one ZIG each
    keys = torch.cat([key[f_idx], a_key])
    sizes = torch.cat([torch.ones(n_free, dtype=torch.long), _sizes(a_ends)])
    groups = torch.cat([-1 - torch.arange(n_free), a_group])  # free units: a group each
    ranks = torch.cat([torch.zeros(n_free, dtype=torch.long), a_rank])
    order = _lexsort(ranks, keys)  # by key, a group's earlier block first on ties
    zig_lists = torch.cat([f_idx, a_zigs])
    starts = torch.cat([torch.arange(n_free), n_free + _starts(a_ends)])
    order = _drop_rejected(pool, order, sizes, starts, zig_lists, already)
    sizes, starts = sizes[order], starts[order]
    gather = torch.repeat_interleave(starts, sizes) + _within(sizes)
    return Units(zig_lists[gather], torch.cumsum(sizes, 0), groups[order], ranks[order])


def _blocks(pool: Pool, key: torch.Tensor, already: torch.Tensor, aligned: torch.Tensor,
            align: torch.Tensor):
    """(ZIGs of every block in block order, block ends, group, rank, key) of the aligned
    channel groups."""
    empty = torch.zeros(0, dtype=torch.long)
    idx = torch.nonzero(aligned).flatten()
    if idx.numel() == 0:
        return empty, empty, empty, empty, torch.zeros(0, dtype=torch.float64)
    gid = pool.gid
    n_groups = int(gid.max()) + 1
    size = torch.bincount(gid, minlength=n_groups)
    gone = torch.bincount(gid[already], minlength=n_groups)
    kept_now = size - gone
    # ZIGs of a group in ascending key, then rank inside the group
    idx = idx[torch.sort(key[idx], stable=True).indices]
    idx = idx[torch.sort(gid[idx], stable=True).indices]
    g = gid[idx]
    first = torch.ones_like(g, dtype=torch.bool)
    first[1:] = g[1:] != g[:-1]
    pos = torch.arange(g.numel())
    group_start = torch.cummax(torch.where(first, pos, torch.zeros_like(pos)), 0).values
    r = pos - group_start
    m = align[idx]
    e = kept_now[g] % m
    block = (r + (m - e) % m) // m
    # a block is a unit if it is whole and leaves at least m ZIGs kept
    removed_after = torch.where(e > 0, e + block * m, (block + 1) * m)
    expected = torch.where((e > 0) & (block == 0), e, m)
    bkey = g * (int(block.max()) + 1) + block
    uniq, inv, count = torch.unique(bkey, return_inverse=True, return_counts=True)
    whole = count[inv] == expected
    ok = whole & (kept_now[g] - removed_after >= m)
    idx, g, block, inv = idx[ok], g[ok], block[ok], inv[ok]
    if idx.numel() == 0:
        return empty, empty, empty, empty, torch.zeros(0, dtype=torch.float64)
    uniq, inv = torch.unique(inv, return_inverse=True)  # blocks in (group, block) order
    n_blocks = int(uniq.numel())
    ends = torch.cumsum(torch.bincount(inv, minlength=n_blocks), 0)
    bgroup = torch.zeros(n_blocks, dtype=torch.long).scatter_(0, inv, g)
    brank = torch.zeros(n_blocks, dtype=torch.long).scatter_(0, inv, block)
    mean = torch.zeros(n_blocks, dtype=torch.float64).index_add_(0, inv, key[idx])
    mean = mean / _sizes(ends).double()
    return idx, ends, bgroup, brank, _monotone(mean, bgroup)


def _monotone(value: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """``value`` made non-decreasing within each run of equal ``group`` (segmented cummax,
    by ranks offset per group so earlier groups never reach into later ones)."""
    if value.numel() == 0:
        return value
    sorted_vals, rank = torch.unique(value, return_inverse=True)
    n = int(sorted_vals.numel())
    seg = torch.cumsum(torch.cat([torch.zeros(1, dtype=torch.long),
                                  (group[1:] != group[:-1]).long()]), 0)
    lifted = torch.cummax(rank + seg * n, 0).values - seg * n
    return sorted_vals[lifted]


def _drop_rejected(pool: Pool, order: torch.Tensor, sizes: torch.Tensor, starts: torch.Tensor,
                   zig_lists: torch.Tensor, already: torch.Tensor) -> torch.Tensor:
    """``order`` less the one-ZIG units that ``pool.admissible_order`` rejects after
    ``already`` (only structures change admissibility, and they are one-ZIG units)."""
    if pool.admissible is None:
        return order
    single = sizes[order] == 1
    zigs = zig_lists[starts[order[single]]]
    kept = pool.admissible_order(zigs, already.clone())
    drop = torch.zeros(order.numel(), dtype=torch.bool)
    drop[torch.nonzero(single).flatten()] = ~torch.isin(zigs, kept)
    return order[~drop]


def _lexsort(secondary: torch.Tensor, primary: torch.Tensor) -> torch.Tensor:
    order = torch.sort(secondary, stable=True).indices
    return order[torch.sort(primary[order], stable=True).indices]


def _sizes(ends: torch.Tensor) -> torch.Tensor:
    return ends - _starts(ends)


def _starts(ends: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.zeros(1, dtype=torch.long), ends[:-1]]) if ends.numel() else ends


def _within(sizes: torch.Tensor) -> torch.Tensor:
    """0, 1, ..., size-1 for every unit, concatenated."""
    total = int(sizes.sum())
    if total == 0:
        return torch.zeros(0, dtype=torch.long)
    starts = torch.repeat_interleave(torch.cumsum(sizes, 0) - sizes, sizes)
    return torch.arange(total) - starts
