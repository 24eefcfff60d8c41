"""FLOPs (MACs) and parameter accounting as a function of which ZIGs are kept.

Each op or parameter contributes ``unit * prod_j kept(dim_j)``: a constant times the number of
kept positions along each of its prunable dims, so costs of any slim model are exact and cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from .search_space import SearchSpace


@dataclass
class CostTerm:
    """``unit * prod_j kept_j``; dim j has ``unassigned[j]`` positions in no ZIG and
    ``counts[j][i]`` positions in ZIG ``zigs[j][i]``."""

    kind: str  # "flops" or "params"
    unit: float
    zigs: list[torch.Tensor]
    counts: list[torch.Tensor]
    unassigned: list[int]
    label: str = ""

    @classmethod
    def from_vectors(cls, kind: str, unit: float, vectors: list[torch.Tensor], label: str = ""):
        zigs, counts, unassigned = [], [], []
        for vec in vectors:
            assigned = vec[vec >= 0]
            u, c = torch.unique(assigned, return_counts=True)
            zigs.append(u)
            counts.append(c.double())
            unassigned.append(int(vec.numel() - assigned.numel()))
        return cls(kind, float(unit), zigs, counts, unassigned, label)

    def value(self, keep: torch.Tensor | None) -> float:
        v = self.unit
        for z, c, u in zip(self.zigs, self.counts, self.unassigned):
            kept = c.sum() if keep is None else c[keep[z]].sum()
            v *= float(kept) + u
        return v


class CostModel:
    """The list of cost terms of a traced model (FLOPs of every op, size of every parameter)."""

    def __init__(self, terms: list[CostTerm]) -> None:
        self.terms = terms

    @classmethod
    def from_params(cls, model: nn.Module, space: SearchSpace) -> CostModel:
        """Parameter terms only (no FLOPs): for search spaces built by hand."""
        terms = []
        for name, p in model.named_parameters():
            ps = space.param_slices.get(name)
            dims = ps.dims if ps is not None else {}
            unit = 1
            for d, s in enumerate(p.shape):
                if d not in dims:
                    unit *= s
            terms.append(CostTerm.from_vectors("params", unit, list(dims.values()), name))
        return cls(terms)

    def _total(self, kind: str, keep: torch.Tensor | None) -> float:
        if keep is not None:
            keep = keep.bool().cpu()
        return sum(t.value(keep) for t in self.terms if t.kind == kind)

    def flops(self, keep: torch.Tensor | None = None) -> float:
        return self._total("flops", keep)

    def params(self, keep: torch.Tensor | None = None) -> float:
        return self._total("params", keep)

    def marginal(self, kind: str, num_zigs: int) -> torch.Tensor:
        """Cost each single ZIG removes from the dense model."""
        out = torch.zeros(num_zigs, dtype=torch.float64)
        for t in self.terms:
            if t.kind != kind or not any(z.numel() for z in t.zigs):
                continue
            sizes = [float(c.sum()) + u for c, u in zip(t.counts, t.unassigned)]
            dense = t.unit
            for s in sizes:
                dense *= s
            touched = torch.unique(torch.cat(t.zigs))
            without = torch.full((touched.numel(),), t.unit, dtype=torch.float64)
            for z, c, s in zip(t.zigs, t.counts, sizes):
                removed = torch.zeros(touched.numel(), dtype=torch.float64)
                removed[torch.searchsorted(touched, z)] = c
                without *= s - removed
            out[touched] += dense - without
        return out

    def prunable_fraction(self, kind: str, prunable: torch.Tensor) -> float:
        total = touched = 0.0
        for t in self.terms:
            if t.kind != kind:
                continue
            v = t.value(None)
            total += v
            if any(bool(prunable[z].any()) for z in t.zigs if z.numel()):
                touched += v
        return touched / total if total else 0.0
