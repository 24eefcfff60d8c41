"""Budgets: what a run keeps (FLOPs, parameters, latency) or zeroes (group sparsity), one class
per kind; selection (`targets`), the optimizers, the CLI and the reports see only this interface.

A cost budget owns its cost of a keep mask, the cost each ZIG removes, a differentiable cost of
a soft mask (ATO), its label and the share of every group a uniform cut keeps. A new kind is one
subclass listed in `BUDGETS` (its keyword is ``target_<name>``).
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from .targets import (
    Pool,
    cost_reachable_bound,
    count_reachable_bound,
    select_cost,
    select_count,
)

if TYPE_CHECKING:
    from ..space import SearchSpace


class Budget:
    """One target. ``value``: for a cost budget the share of the dense model to KEEP, for group
    sparsity the share of prunable ZIGs to zero; always in (0, 1)."""

    name: ClassVar[str]  # the keyword is target_<name>, the CLI flag --target-<name>
    label: ClassVar[str]  # in messages and reports: "FLOPs", "parameters", ...
    meaning: ClassVar[str]  # what the value is, for help texts: "share of the FLOPs kept"

    def __init__(self, value: float) -> None:
        if isinstance(value, (str, bool)) or not isinstance(value, (int, float)):
            # "0.5" from a config file would pass float()
            raise TypeError(f"{self.keyword} must be a number in (0, 1), got {value!r} "
                            f"({type(value).__name__}); e.g. {self.keyword}=0.5")
        if not 0.0 < float(value) < 1.0:
            raise ValueError(f"{self.keyword} must be in (0, 1), got {value}")
        self.value = float(value)

    @property
    def keyword(self) -> str:
        return f"target_{self.name}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value:g})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.value == self.value  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self.value))

    def describe(self) -> str:
        """``keeping 50% of the FLOPs`` / ``zeroing 40% of the prunable groups``."""
        raise NotImplementedError

    def fraction_at(self, progress: float) -> float:
        """Cumulative target after ``progress`` in (0, 1] of the pruning phase (linear)."""
        raise NotImplementedError

    def uniform_keep(self) -> float:
        """Share of every group's ZIGs a uniform cut keeps to meet the target."""
        raise NotImplementedError

    def select(self, space: SearchSpace, fraction: float, score: torch.Tensor,
               already: torch.Tensor, pool: Pool | None = None, refine: int = 128,
               tol: float = 0.002) -> torch.Tensor:
        """Bool ``[num_zigs]`` (CPU): ``already`` plus the least salient ZIGs of ``pool``
        (default: every prunable ZIG of ``space``) that reach ``fraction`` (see
        `fraction_at`). Deterministic (stable sorts)."""
        raise NotImplementedError

    def reachable_bound(self, space: SearchSpace, pool: Pool) -> float:
        raise NotImplementedError

    def check_reachable(self, space: SearchSpace, pool: Pool) -> None:
        """ValueError naming the reachable bound when no selection from ``pool`` meets it."""
        raise NotImplementedError


class GroupSparsity(Budget):
    """Zero ``value`` of the prunable ZIGs."""

    name = "group_sparsity"
    label = "group sparsity"
    meaning = "share of the prunable groups (channels, heads, structures) removed"

    def describe(self) -> str:
        return f"zeroing {self.value:.0%} of the prunable groups"

    def fraction_at(self, progress: float) -> float:
        return self.value * progress

    def uniform_keep(self) -> float:
        return 1.0 - self.value

    def select(self, space, fraction, score, already, pool=None, refine=128, tol=0.002):
        return select_count(fraction, score, already, pool or Pool.of(space))

    def reachable_bound(self, space, pool):
        return count_reachable_bound(pool)

    def check_reachable(self, space, pool):
        bound = self.reachable_bound(space, pool)
        n = int(pool.prunable.sum())
        if round(self.value * n) <= round(bound * n):
            return
        name = f"{self.keyword}={self.value:g}"
        if bound <= 0:
            raise ValueError(f"{name} cannot be reached: {NOTHING_REMOVABLE}{_aligned(space)}")
        most = math.floor(bound * 1000) / 1000
        raise ValueError(
            f"{name} cannot be reached: every group keeps at least one ZIG, so at most "
            f"{bound:.1%} of the prunable ZIGs can be zeroed; choose {self.keyword} <= {most:.3f}"
            f"{_aligned(space)}"
        )


class CostBudget(Budget):
    """Keep at most ``value`` of the dense model's cost. Subclasses give `cost`, `marginal`
    and `soft`."""

    def cost(self, space: SearchSpace, keep: torch.Tensor | None) -> float:
        """The cost of the model keeping the ZIGs of bool ``keep`` (None: dense)."""
        raise NotImplementedError

    def marginal(self, space: SearchSpace) -> torch.Tensor:
        """Float64 ``[num_zigs]``: the cost each ZIG alone removes from the dense model (orders
        candidates; exact costs come from `cost`)."""
        raise NotImplementedError

    def soft(self, space: SearchSpace, mask: torch.Tensor) -> torch.Tensor:
        """The cost of a float keep mask ``[num_zigs]``, differentiable; `cost` on 0/1 masks."""
        raise NotImplementedError

    def dense(self, space: SearchSpace) -> float:
        d = self.cost(space, None)
        if not d > 0:
            raise ValueError(f"the search space has no {self.label} cost terms")
        return d

    def fixed_share(self, space: SearchSpace) -> float:
        """Share of the dense cost that no mask changes (every prunable ZIG removed)."""
        return self.cost(space, ~space.prunable_mask) / self.dense(space)

    def describe(self) -> str:
        return f"keeping {self.value:.0%} of the {self.label}"

    def fraction_at(self, progress: float) -> float:
        return 1.0 - (1.0 - self.value) * progress

    def uniform_keep(self) -> float:
        # a layer's cost scales with its input and its output width
        return math.sqrt(self.value)

    def select(self, space, fraction, score, already, pool=None, refine=128, tol=0.002):
        return select_cost(space, self, fraction, score, already, pool or Pool.of(space),
                           refine, tol)

    def reachable_bound(self, space, pool):
        return cost_reachable_bound(space, self, pool)

    def check_reachable(self, space, pool):
        bound = self.reachable_bound(space, pool)
        if self.value >= bound - 1e-12:
            return
        name = f"{self.keyword}={self.value:g}"
        if bound >= 1.0 - 1e-12:
            raise ValueError(f"{name} cannot be reached: no {self.label} can be removed "
                             f"({NOTHING_REMOVABLE}){_aligned(space)}")
        least = math.ceil(bound * 1000) / 1000
        raise ValueError(
            f"{name} cannot be reached: at most {1 - bound:.1%} of {self.label} can be removed "
            f"(keep >= {least:.3f}); choose {self.keyword} >= {least:.3f}{_aligned(space)}"
        )


class Flops(CostBudget):
    """Keep at most ``value`` of the dense model's FLOPs (multiply-accumulates)."""

    name = "flops"
    label = "FLOPs"
    meaning = "share of the FLOPs kept"

    def cost(self, space, keep):
        return space.flops(keep)

    def marginal(self, space):
        return space.zig_flops()

    def soft(self, space, mask):
        return space.costs.soft("flops", mask)


class Params(CostBudget):
    """Keep at most ``value`` of the dense model's parameters."""

    name = "params"
    label = "parameters"
    meaning = "share of the parameters kept"

    def cost(self, space, keep):
        return float(space.num_params(keep))

    def marginal(self, space):
        return space.zig_params()

    def soft(self, space, mask):
        return space.costs.soft("params", mask)


class Latency(CostBudget):
    """Keep at most ``value`` of the dense model's latency, as ``table`` (a
    `trainonce.LatencyTable` measured for this space) predicts it."""

    name = "latency"
    label = "latency"
    meaning = "share of the dense model's latency kept, on the device measured"

    def __init__(self, value: float, table: Any) -> None:
        super().__init__(value)
        self.table = table

    def cost(self, space, keep):
        return float(self.table.cost(keep))

    def marginal(self, space):
        return self.table.marginal()

    def soft(self, space, mask):
        return self.table.soft(mask)


BUDGETS: tuple[type[Budget], ...] = (GroupSparsity, Flops, Params, Latency)
COST_BUDGETS: tuple[type[Budget], ...] = tuple(b for b in BUDGETS if issubclass(b, CostBudget))


def budget_from_args(
    space: SearchSpace | None = None,
    *,
    latency_table: Any = None,
    owner: str = "the optimizer",
    **targets: float | None,
) -> Budget:
    """The one budget among the keywords ``target_<name>`` (exactly one must be given).
    ``target_latency`` without ``latency_table`` measures a table of ``space`` on the CPU at
    batch 1 and says so."""
    known = {f"target_{b.name}": b for b in BUDGETS}
    unknown = sorted(set(targets) - set(known))
    if unknown:
        raise TypeError(f"unknown target {unknown[0]}; the targets are {', '.join(known)}")
    given = {k: v for k, v in targets.items() if v is not None}
    if len(given) != 1:
        raise ValueError(f"give exactly one of {', '.join(known)} (got {sorted(given) or 'none'})")
    keyword, value = next(iter(given.items()))
    cls = known[keyword]
    if cls is not Latency:
        if latency_table is not None:
            raise ValueError(f"latency_table goes with target_latency, not {keyword}")
        return cls(value)
    Latency(value, None)  # check the value before a measurement
    if latency_table is None:
        if space is None:
            raise ValueError("target_latency needs latency_table=trainonce.measure_latency(space)")
        from ..latency import measure_latency

        warnings.warn(
            f"{owner}: target_latency without latency_table: measuring this model's latency "
            "on the CPU at batch 1 with torch's current thread count; pass "
            "latency_table=trainonce.measure_latency(space, device=..., batch_size=...) for the "
            "device the model will run on",
            stacklevel=3,
        )
        latency_table = measure_latency(space, progress=True)
    if space is not None:
        latency_table.bind(space)  # a table of another model is refused here
    return Latency(value, latency_table)


def _aligned(space: SearchSpace) -> str:
    """The hint for an aligned space, whose groups keep multiples of ``align`` channels."""
    m = getattr(space, "align", 1)
    if m <= 1:
        return ""
    return (f"; with align={m} every channel group keeps a multiple of {m} channels (groups "
            f"narrower than {m} are kept whole): analyze with a smaller align (the CLI's "
            "--align 1) to cut finer")


def budget_kind(name: str) -> type[Budget]:
    """The budget class called ``name`` ("flops", "group_sparsity", ...)."""
    for b in BUDGETS:
        if b.name == name:
            return b
    raise ValueError(f"unknown budget {name!r}; the budgets are "
                     f"{', '.join(b.name for b in BUDGETS)}")


NOTHING_REMOVABLE = (
    "no group has a ZIG that can be removed (each keeps one, and ZIGs with slices in frozen "
    "parameters are not pruned)"
)
