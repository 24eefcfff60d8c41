"""Selection: which ZIGs to make redundant for a budget (`budgets`), drawn from a `Pool`.

`select_count` (group sparsity) takes the lowest scores; `select_cost` (any cost budget) takes
saliency per square root of cost and the shortest prefix meeting the budget (binary search on
the budget's exact cost), then `fill_budget`, which ATO's budget correction shares. A `Pool` is
what the optimizer may zero, plus one hook (``admissible``) for constraints between ZIGs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..space import SearchSpace
from .units import Units, removal_units

if TYPE_CHECKING:
    from .budgets import CostBudget


# FLOPs/params selection orders ZIGs by saliency / relative_cost**COST_EXPONENT. 1.0 (saliency
# per unit of cost) strips the high-resolution early layers, whose channels cost the most FLOPs,
# to one channel; 0.0 ignores cost and can empty whole later stages. ResNet8 / 5k MNIST, HESSO at
# 50% / 30% FLOPs (dense 97.95%): 96.93 / 96.37 with 1.0, 97.49 / 97.17 with 0.5
# (benchmarks/bench_optim_quality.py); a probe with 0.25 was no better on digits.
COST_EXPONENT = 0.5


def group_index(space: SearchSpace) -> torch.Tensor:
    gid = torch.empty(space.num_zigs, dtype=torch.long)
    for k, g in enumerate(space.groups):
        gid[g.offset : g.offset + g.size] = k
    return gid


def _protect_last(score: torch.Tensor, free: torch.Tensor, gid: torch.Tensor) -> torch.Tensor:
    """Mask of the highest-scoring free ZIG of every group: each group keeps at least one ZIG."""
    n_groups = int(gid.max()) + 1 if gid.numel() else 0
    s = torch.where(free, score, torch.full_like(score, -float("inf")))
    best = torch.full((n_groups,), -float("inf"), dtype=score.dtype)
    best.scatter_reduce_(0, gid, s, reduce="amax")
    is_best = free & (s == best[gid])
    # ties: keep only the first ZIG of each group that reaches the max
    first = torch.full((n_groups,), len(score), dtype=torch.long)
    first.scatter_reduce_(0, gid[is_best], torch.nonzero(is_best).flatten(), reduce="amin")
    out = torch.zeros_like(free)
    out[first[first < len(score)]] = True
    return out


Admissible = Callable[[torch.Tensor], bool]


@dataclass(frozen=True)
class Pool:
    """What selection may draw from.

    ``prunable``: bool ``[num_zigs]``, the ZIGs the optimizer may zero (the space's prunable
    ZIGs minus those it cannot drive to zero, e.g. with slices in frozen parameters).
    ``gid``: the group of every ZIG; every channel group keeps at least one ZIG.
    ``structures``: bool ``[num_zigs]``, whole structures (erasing mode): their size-1 groups
    may go entirely, as far as ``admissible`` allows, which only they can change.
    ``admissible``: optional check of a whole chosen set (bool ``[num_zigs]`` -> bool), the
    one hook for constraints between ZIGs (erasing mode's hierarchy, say: a module may go only
    with the modules below it). Candidates are taken in preference order and one whose
    addition makes the chosen set inadmissible is passed over, so with an admissible
    ``already`` every returned set is admissible. It is called once per candidate (a Python
    loop), only when given and only at selections (period starts), never per step.
    ``align``: long ``[num_groups]``, the alignment of every group (`SearchSpace.group_align`:
    a group aligned to ``m`` keeps a multiple of ``m`` ZIGs or all of them); None: 1 for all.
    """

    prunable: torch.Tensor
    gid: torch.Tensor
    admissible: Admissible | None = None
    structures: torch.Tensor | None = None
    align: torch.Tensor | None = None

    @classmethod
    def of(
        cls,
        space: SearchSpace,
        exclude: torch.Tensor | None = None,
        admissible: Admissible | None = None,
    ) -> Pool:
        """The pool of ``space``; with removable structures, ``admissible`` defaults to the
        space's hierarchy check (`SearchSpace.valid`)."""
        prunable = space.prunable_mask
        if exclude is not None:
            prunable = prunable & ~exclude.bool().cpu()
        structures = space.structure_mask & prunable
        align = space.group_align()
        align = align if bool((align > 1).any()) else None
        if not bool(structures.any()):
            return cls(prunable, group_index(space), admissible, align=align)
        return cls(prunable, group_index(space), admissible or space.valid, structures, align)

    def zig_align(self) -> torch.Tensor:
        """Long ``[num_zigs]``: the alignment of every ZIG's group (1: free)."""
        if self.align is None:
            return torch.ones_like(self.gid)
        return self.align[self.gid]

    def candidates(self, score: torch.Tensor, already: torch.Tensor) -> torch.Tensor:
        """Bool: prunable ZIGs not yet chosen, less the best-scoring one of every channel
        group (a structure may go whole)."""
        alive = self.prunable & ~already
        last = _protect_last(score, alive, self.gid)
        if self.structures is not None:
            last &= ~self.structures
        return alive & ~last

    def allows(self, chosen: torch.Tensor) -> bool:
        return self.admissible is None or bool(self.admissible(chosen))

    def admissible_order(
        self, order: torch.Tensor, chosen: torch.Tensor, limit: int | None = None
    ) -> torch.Tensor:
        """``order`` less the candidates that would make ``chosen`` plus the earlier ones
        inadmissible (every prefix of the result is admissible); at most ``limit`` of them."""
        if self.admissible is None:
            return order
        # only structures can change admissibility: check them alone, in order (a prefix of
        # the result then saw exactly the structures accepted before it)
        check = order if self.structures is None else order[self.structures[order]]
        trial, rejected = chosen.clone(), []
        for j in check.tolist():
            trial[j] = True
            if not self.allows(trial):
                trial[j] = False
                rejected.append(j)
        if rejected:
            order = order[~torch.isin(order, torch.tensor(rejected, dtype=torch.long))]
        return order if limit is None else order[:limit]


def select_count(
    fraction: float, score: torch.Tensor, already: torch.Tensor, pool: Pool
) -> torch.Tensor:
    """``already`` plus the lowest-scoring units up to ``round(fraction * prunable)`` ZIGs (with
    alignment, the prefix of whole units closest to it)."""
    chosen = already.bool().cpu().clone()
    need = int(round(fraction * int(pool.prunable.sum()))) - int(chosen.sum())
    if need <= 0:
        return chosen
    units = removal_units(pool, score, chosen)
    n = int(torch.searchsorted(units.ends, torch.tensor(need), right=True))
    if n < units.count and units.zig_count(n + 1) - need < need - units.zig_count(n):
        n += 1
    if need > units.zig_count(units.count):
        warnings.warn(f"only {units.zig_count(units.count)} ZIGs can be removed, {need} "
                      "requested", stacklevel=3)
    chosen[units.prefix(n)] = True
    return chosen


def select_cost(
    space: SearchSpace,
    budget: CostBudget,
    fraction: float,
    score: torch.Tensor,
    already: torch.Tensor,
    pool: Pool,
    refine: int = 128,
    tol: float = 0.002,
) -> torch.Tensor:
    """``already`` plus units in order of ``score / relative_cost**COST_EXPONENT`` until the
    kept cost is at most ``fraction`` of the dense cost, as close to it as ``tol`` allows."""
    def cost_fn(keep: torch.Tensor) -> float:
        return budget.cost(space, keep)

    marginal, dense = budget.marginal(space), budget.dense(space)
    score, already = score.detach().double().cpu(), already.bool().cpu()
    limit = fraction * dense
    if cost_fn(~already) <= limit:
        return already.clone()
    costly = marginal > 0
    rel_cost = marginal / marginal[costly & pool.prunable].mean()
    key = torch.where(costly, score / rel_cost.clamp(min=1e-300) ** COST_EXPONENT, score)
    units = removal_units(pool, key, already, eligible=costly)
    chosen = fill_budget(units, already, cost_fn, limit, limit - tol * dense, pool, refine)
    if chosen is None:
        warnings.warn(f"{budget.label} target {fraction:.3f} unreachable; removing all",
                      stacklevel=3)
        chosen = already.clone()
        chosen[units.zigs] = True
    return chosen


def fill_budget(
    units: Units,
    start: torch.Tensor,
    cost_fn: Callable[[torch.Tensor], float],
    budget: float,
    lower: float,
    pool: Pool,
    refine: int = 128,
) -> torch.Tensor | None:
    """The one selection routine of every cost budget (`select_cost`, ATO's `fit_budget`):
    ``start`` plus the shortest prefix of ``units`` whose kept cost ``cost_fn(~chosen)`` is at
    most ``budget``; None if even all of them are not enough.

    The prefix's last unit may undershoot by its whole cost: it is swapped for the first later
    units (at most ``refine``, first fit, admissible in ``pool``, each the next of its group's
    blocks) that land in ``[lower, budget]``, else the closest set from below is returned."""

    def with_prefix(n: int) -> torch.Tensor:
        m = start.clone()
        m[units.prefix(n)] = True
        return m

    def cost_of(n: int) -> float:
        return cost_fn(~with_prefix(n))

    n = shortest_prefix(cost_of, units.count, budget)
    if n is None:
        return None
    chosen = with_prefix(n)
    if n == 0 or cost_of(n) >= lower:
        return chosen
    best, best_cost = chosen.clone(), cost_of(n)
    chosen[units.unit(n - 1)] = False
    # a group's blocks go in order: once one of them is passed over (or the last unit's own
    # group), its later blocks are too
    blocked = {int(units.group[n - 1])}
    for j in range(n, min(units.count, n + refine)):
        g = int(units.group[j])
        if g in blocked:
            continue
        zigs = units.unit(j)
        chosen[zigs] = True
        if not pool.allows(chosen):
            chosen[zigs] = False
            blocked.add(g)
            continue
        c = cost_fn(~chosen)
        if c > budget:
            continue  # still above: keep j, add the next
        if c >= lower:
            return chosen
        if c > best_cost:
            best, best_cost = chosen.clone(), c
        chosen[zigs] = False
        blocked.add(g)
    return best


def shortest_prefix(cost_of: Callable[[int], float], hi: int, budget: float) -> int | None:
    """Smallest ``n`` in ``[0, hi]`` with ``cost_of(n) <= budget`` (cost falls with ``n``);
    None if even ``cost_of(hi)`` exceeds it."""
    if cost_of(hi) > budget:
        return None
    lo = 0
    while lo < hi:
        mid = (lo + hi) // 2
        if cost_of(mid) <= budget:
            hi = mid
        else:
            lo = mid + 1
    return lo


def count_reachable_bound(pool: Pool) -> float:
    """The largest share of the pool's ZIGs a group-sparsity selection can zero: every unit
    (`units`: each channel group keeps one ZIG, or one block when aligned; structures as far as
    admissibility allows)."""
    n = int(pool.prunable.sum())
    units = removal_units(pool, torch.zeros(pool.prunable.numel(), dtype=torch.float64),
                          torch.zeros_like(pool.prunable))
    return units.zig_count(units.count) / n if n else 0.0


def cost_reachable_bound(space: SearchSpace, budget: CostBudget, pool: Pool) -> float:
    """The smallest kept share of the dense cost: every unit removed, the most costly first,
    so each channel group keeps its cheapest ZIG (or block) and the structures that go are
    the costliest admissible ones; everything outside the pool kept."""
    marginal = budget.marginal(space).double()
    units = removal_units(pool, -marginal, torch.zeros_like(pool.prunable))
    keep = torch.ones_like(pool.prunable)
    keep[units.zigs] = False
    return budget.cost(space, keep) / budget.dense(space)
