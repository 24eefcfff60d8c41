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
    """

    prunable: torch.Tensor
    gid: torch.Tensor
    admissible: Admissible | None = None
    structures: torch.Tensor | None = None

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
        if not bool(structures.any()):
            return cls(prunable, group_index(space), admissible)
        return cls(prunable, group_index(space), admissible or space.valid, structures)

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
    """``already`` plus the lowest-scoring candidates up to ``round(fraction * prunable)``."""
    score, already = score.detach().double().cpu(), already.bool().cpu()
    chosen = already.clone()
    need = int(round(fraction * int(pool.prunable.sum()))) - int(already.sum())
    if need <= 0:
        return chosen
    idx = torch.nonzero(pool.candidates(score, already)).flatten()
    order = idx[torch.sort(score[idx], stable=True).indices]
    order = pool.admissible_order(order, chosen, limit=need)
    if need > order.numel():
        warnings.warn(f"only {order.numel()} ZIGs can be removed, {need} requested", stacklevel=3)
    chosen[order[:need]] = True
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
    """``already`` plus candidates in order of ``score / relative_cost**COST_EXPONENT`` until
    the kept cost is at most ``fraction`` of the dense cost, as close to it as ``tol`` allows."""
    def cost_fn(keep: torch.Tensor) -> float:
        return budget.cost(space, keep)

    marginal, dense = budget.marginal(space), budget.dense(space)
    score, already = score.detach().double().cpu(), already.bool().cpu()
    limit = fraction * dense
    chosen = already.clone()
    if cost_fn(~chosen) <= limit:
        return chosen
    idx = torch.nonzero(pool.candidates(score, already) & (marginal > 0)).flatten()
    rel_cost = marginal[idx] / marginal[idx].mean()
    key = score[idx] / rel_cost**COST_EXPONENT
    order = pool.admissible_order(idx[torch.sort(key, stable=True).indices], chosen)
    chosen = fill_budget(order, chosen, cost_fn, limit, limit - tol * dense, pool, refine)
    if chosen is None:
        warnings.warn(f"{budget.label} target {fraction:.3f} unreachable; removing all",
                      stacklevel=3)
        chosen = already.clone()
        chosen[order] = True
    return chosen


def fill_budget(
    order: torch.Tensor,
    start: torch.Tensor,
    cost_fn: Callable[[torch.Tensor], float],
    budget: float,
    lower: float,
    pool: Pool,
    refine: int = 128,
) -> torch.Tensor | None:
    """The one selection routine of every cost budget (`select_cost`, ATO's `fit_budget`):
    ``start`` plus the shortest prefix of ``order`` whose kept cost ``cost_fn(~chosen)`` is at
    most ``budget``; None if even all of ``order`` is not enough.

    The prefix's last ZIG may undershoot by its whole cost: it is swapped for the first later
    ZIGs (at most ``refine``, first fit, admissible in ``pool``) that land in ``[lower,
    budget]``, else the closest set from below is returned."""

    def cost_of(n: int) -> float:
        m = start.clone()
        m[order[:n]] = True
        return cost_fn(~m)

    n = shortest_prefix(cost_of, order.numel(), budget)
    if n is None:
        return None
    chosen = start.clone()
    chosen[order[:n]] = True
    if n == 0 or cost_of(n) >= lower:
        return chosen
    best, best_cost = chosen.clone(), cost_of(n)
    chosen[order[n - 1]] = False
    for j in order[n : n + refine].tolist():
        chosen[j] = True
        if not pool.allows(chosen):
            chosen[j] = False
            continue
        c = cost_fn(~chosen)
        if c > budget:
            continue  # still above: keep j, add the next
        if c >= lower:
            return chosen
        if c > best_cost:
            best, best_cost = chosen.clone(), c
        chosen[j] = False
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
    """The largest share of the pool's ZIGs a group-sparsity selection can zero (every channel
    group keeps one ZIG; structures go as far as admissibility allows)."""
    structures = _structures(pool)
    n = int(pool.prunable.sum())
    groups = int(torch.unique(pool.gid[pool.prunable & ~structures]).numel())
    return (n - groups - _kept_structures(pool, structures, None)) / n if n else 0.0


def cost_reachable_bound(space: SearchSpace, budget: CostBudget, pool: Pool) -> float:
    """The smallest kept share of the dense cost: every group of the pool reduced to its
    cheapest ZIG (selection keeps one ZIG per group), everything outside the pool kept."""
    structures = _structures(pool)
    marginal = budget.marginal(space)
    last = _protect_last(-marginal.double(), pool.prunable & ~structures, pool.gid)
    keep = ~pool.prunable | last
    keep |= structures & ~_most_structures(pool, structures, marginal)
    return budget.cost(space, keep) / budget.dense(space)


def _structures(pool: Pool) -> torch.Tensor:
    return pool.structures if pool.structures is not None else torch.zeros_like(pool.prunable)


def _most_structures(pool: Pool, structures: torch.Tensor, marginal: torch.Tensor | None
                     ) -> torch.Tensor:
    """A maximal admissible set of structures, taken in order of falling cost (greedy)."""
    idx = torch.nonzero(structures).flatten()
    if marginal is not None:
        idx = idx[torch.sort(-marginal[idx], stable=True).indices]
    gone = torch.zeros_like(structures)
    gone[pool.admissible_order(idx, gone)] = True
    return gone


def _kept_structures(pool: Pool, structures: torch.Tensor, marginal) -> int:
    return int(structures.sum()) - int(_most_structures(pool, structures, marginal).sum())
