"""Budget selection: which ZIGs to make redundant for a group-count, FLOPs or params target.

Costs are exact (``space.flops``/``space.num_params`` of the keep mask, bilinear effects included);
FLOPs/params selection orders ZIGs by saliency per (square root of) cost and binary-searches the
prefix.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from ..space import SearchSpace


@dataclass(frozen=True)
class Target:
    """Exactly one budget. ``kind`` in {"group_sparsity", "flops", "params"}; for "flops" and
    "params" ``value`` is the fraction of the dense model to KEEP, for "group_sparsity" the
    fraction of prunable ZIGs to zero."""

    kind: str
    value: float

    @classmethod
    def from_args(
        cls,
        target_group_sparsity: float | None,
        target_flops: float | None,
        target_params: float | None,
    ) -> Target:
        given = {
            k: v
            for k, v in (
                ("group_sparsity", target_group_sparsity),
                ("flops", target_flops),
                ("params", target_params),
            )
            if v is not None
        }
        if len(given) != 1:
            raise ValueError(
                "give exactly one of target_group_sparsity, target_flops, target_params "
                f"(got {sorted(given) or 'none'})"
            )
        kind, value = next(iter(given.items()))
        if not 0.0 < float(value) < 1.0:
            raise ValueError(f"target_{kind} must be in (0, 1), got {value}")
        return cls(kind, float(value))

    def fraction_at(self, progress: float) -> float:
        """Cumulative target after ``progress`` in (0, 1] of the pruning phase: zero share for
        group sparsity, kept share for FLOPs/params (linear from 1 down to the target)."""
        if self.kind == "group_sparsity":
            return self.value * progress
        return 1.0 - (1.0 - self.value) * progress


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


def select(
    space: SearchSpace,
    target: Target,
    fraction: float,
    score: torch.Tensor,
    already: torch.Tensor,
    gid: torch.Tensor | None = None,
    refine: int = 128,
    tol: float = 0.002,
) -> torch.Tensor:
    """Bool ``[num_zigs]`` (CPU): ``already`` plus the lowest-scoring prunable ZIGs needed to
    reach ``fraction`` (see `Target.fraction_at`). Deterministic (stable sorts)."""
    score = score.detach().double().cpu()
    already = already.bool().cpu()
    prunable = space.prunable_mask
    gid = group_index(space) if gid is None else gid
    alive = prunable & ~already
    cand = alive & ~_protect_last(score, alive, gid)
    chosen = already.clone()
    if target.kind == "group_sparsity":
        need = int(round(fraction * space.num_prunable_zigs)) - int(already.sum())
        if need <= 0:
            return chosen
        idx = torch.nonzero(cand).flatten()
        order = idx[torch.sort(score[idx], stable=True).indices]
        if need > order.numel():
            warnings.warn(
                f"only {order.numel()} ZIGs can be removed, {need} requested", stacklevel=3
            )
        chosen[order[:need]] = True
        return chosen

    cost_fn = space.flops if target.kind == "flops" else space.num_params
    marginal = space.zig_flops() if target.kind == "flops" else space.zig_params()
    dense = cost_fn(None)
    if dense <= 0:
        raise ValueError(f"the search space has no {target.kind} cost terms")
    budget = fraction * dense
    if cost_fn(~chosen) <= budget:
        return chosen
    idx = torch.nonzero(cand & (marginal > 0)).flatten()
    rel_cost = marginal[idx] / marginal[idx].mean()
    key = score[idx] / rel_cost**COST_EXPONENT
    order = idx[torch.sort(key, stable=True).indices]

    def cost_of(n: int) -> float:
        m = chosen.clone()
        m[order[:n]] = True
        return cost_fn(~m)

    lo, hi = 0, order.numel()  # smallest n with cost_of(n) <= budget
    if cost_of(hi) > budget:
        warnings.warn(
            f"{target.kind} target {fraction:.3f} unreachable; removing all", stacklevel=3
        )
        lo = hi
    while lo < hi:
        mid = (lo + hi) // 2
        if cost_of(mid) <= budget:
            hi = mid
        else:
            lo = mid + 1
    if lo == 0:
        return chosen
    # the prefix's last ZIG may overshoot the budget by its whole cost: first-fit the gap with
    # the next candidates in order (skip those that would undershoot by more than ``tol``)
    chosen[order[: lo - 1]] = True
    lower = budget - tol * dense
    best, best_cost = int(order[lo - 1]), cost_of(lo)  # fallback: closest from below
    for j in order[lo - 1 : lo + refine].tolist():
        chosen[j] = True
        c = cost_fn(~chosen)
        if c > budget:
            continue
        if c >= lower:
            return chosen
        chosen[j] = False
        if c > best_cost:
            best, best_cost = j, c
    if cost_fn(~chosen) > budget:
        chosen[best] = True
    return chosen
