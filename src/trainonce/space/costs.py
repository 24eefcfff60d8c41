"""FLOPs (MACs) and parameter accounting as a function of which ZIGs are kept.

Each op or parameter contributes ``unit * prod_j kept(dim_j)``: a constant times the number of
kept positions along each of its prunable dims. All terms live in one flat table, so the cost of
any slim model (and the cost each ZIG removes) is a handful of vectorised ops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from .slots import per_position, slot_index, with_slot

if TYPE_CHECKING:
    from .search_space import ParamSlices


@dataclass
class CostTerm:
    """``unit * prod_j kept(vectors[j])``; a vector holds the ZIG id of every position of one
    dim (-1: in no prunable ZIG, always kept). ``outer`` (optional, same shapes) holds the
    structure ZIG of every position (erasing mode): a position is kept when both of its ZIGs
    are. A term inside a structure has a one-position vector holding the structure's ZIG."""

    kind: str  # "flops" or "params"
    unit: float
    vectors: list[torch.Tensor]
    outer: list[torch.Tensor] | None = None

    @classmethod
    def from_vectors(cls, kind: str, unit: float, vectors: list[torch.Tensor],
                     outer: list[torch.Tensor] | None = None) -> CostTerm:
        flat = [v.reshape(-1).long() for v in vectors]
        return cls(kind, float(unit), flat,
                   None if outer is None else [o.reshape(-1).long() for o in outer])


class _Table:
    """Terms of one kind, flattened: every position of every vector, tagged with its vector;
    every vector tagged with its term."""

    def __init__(self, terms: list[CostTerm]) -> None:
        self.unit = torch.tensor([t.unit for t in terms], dtype=torch.float64)
        vec_term, lengths, flat, outer = [], [], [], []
        for i, t in enumerate(terms):
            for j, v in enumerate(t.vectors):
                vec_term.append(i)
                lengths.append(v.numel())
                flat.append(v)
                outer.append(t.outer[j] if t.outer is not None else torch.full_like(v, -1))
        self.n_terms = len(terms)
        self.vec_term = torch.tensor(vec_term, dtype=torch.long)
        self.length = torch.tensor(lengths, dtype=torch.float64)
        self.zig = torch.cat(flat) if flat else torch.zeros(0, dtype=torch.long)
        outer_ids = torch.cat(outer) if outer else torch.zeros(0, dtype=torch.long)
        # positions in a structure ZIG: kept only if both their ZIGs are (None: no structures)
        self.outer = outer_ids if bool((outer_ids >= 0).any()) else None
        self.pos_vec = torch.repeat_interleave(torch.arange(len(lengths)),
                                               torch.tensor(lengths, dtype=torch.long))

    def kept_lengths(self, keep: torch.Tensor | None) -> torch.Tensor:
        if keep is None or self.zig.numel() == 0:
            return self.length.clone()
        keep = keep.bool().cpu()
        kept = per_position(keep, self.zig, True)
        if self.outer is not None:
            kept = kept & per_position(keep, self.outer, True)
        return torch.zeros_like(self.length).index_add_(0, self.pos_vec, kept.double())

    def per_term(self, lengths: torch.Tensor) -> torch.Tensor:
        prod = torch.ones(self.n_terms, dtype=torch.float64)
        if lengths.numel():
            prod.scatter_reduce_(0, self.vec_term, lengths, reduce="prod")
        return self.unit * prod

    def total(self, keep: torch.Tensor | None) -> float:
        return float(self.per_term(self.kept_lengths(keep)).sum())

    def soft(self, mask: torch.Tensor) -> torch.Tensor:
        """The cost as a differentiable function of a float mask ``[num_zigs]`` (1 = kept):
        every kept length is the sum of its positions' mask values (1 outside prunable ZIGs).
        Float64 on the mask's device; equal to `total` when the mask is 0/1."""
        dev = mask.device
        unit = self.unit.to(dev)
        if self.zig.numel() == 0:
            return unit.sum()
        vals = with_slot(mask.to(torch.float64), 1.0)
        kept = vals[slot_index(self.zig.to(dev), mask.numel())]
        if self.outer is not None:
            kept = kept * vals[slot_index(self.outer.to(dev), mask.numel())]
        lengths = torch.zeros(self.length.numel(), dtype=torch.float64, device=dev).index_add(
            0, self.pos_vec.to(dev), kept
        )
        ones = torch.ones(self.n_terms, dtype=torch.float64, device=dev)
        prod = ones.scatter_reduce(0, self.vec_term.to(dev), lengths, reduce="prod")
        return (unit * prod).sum()

    def marginal(self, num_zigs: int) -> torch.Tensor:
        """Cost each single ZIG removes from the dense model:
        sum over terms of dense_t * (1 - prod_{vectors j holding z} (1 - count_jz / len_j))."""
        out = torch.zeros(num_zigs, dtype=torch.float64)
        zig, pos_vec = self.zig, self.pos_vec
        if self.outer is not None:  # a position goes with its channel ZIG or its structure
            zig, pos_vec = torch.cat([zig, self.outer]), torch.cat([pos_vec, pos_vec])
        mask = zig >= 0
        if not bool(mask.any()):
            return out
        z, vec = zig[mask], pos_vec[mask]
        key, count = torch.unique(vec * (num_zigs + 1) + z, return_counts=True)
        vec, z = key // (num_zigs + 1), key % (num_zigs + 1)
        factor = 1.0 - count.double() / self.length[vec]
        term = self.vec_term[vec]
        tkey, inv = torch.unique(term * (num_zigs + 1) + z, return_inverse=True)
        prod = torch.ones(tkey.numel(), dtype=torch.float64).scatter_reduce_(
            0, inv, factor, reduce="prod")
        dense = self.per_term(self.length)
        out.index_add_(0, tkey % (num_zigs + 1), dense[tkey // (num_zigs + 1)] * (1.0 - prod))
        return out

    def touched_fraction(self, prunable: torch.Tensor) -> float:
        dense = self.per_term(self.length)
        if dense.sum() == 0:
            return 0.0
        hit = torch.zeros(self.n_terms, dtype=torch.bool)
        for ids in (self.zig, self.outer if self.outer is not None else self.zig):
            mask = ids >= 0
            if bool(mask.any()):
                good = prunable[ids[mask]]
                hit[self.vec_term[self.pos_vec[mask][good]]] = True
        return float(dense[hit].sum() / dense.sum())


def _layer(layers: list, d: int, layer: dict[int, torch.Tensor]) -> torch.Tensor:
    """ZIG ids along dim ``d`` in one layer (channels or structures); -1 where it has none."""
    if d in layer:
        return layer[d]
    n = next(v.numel() for dim, v in layers if dim == d)
    return torch.full((n,), -1, dtype=torch.long)


class CostModel:
    """The cost terms of a traced model (FLOPs of every op, size of every parameter)."""

    def __init__(self, terms: list[CostTerm]) -> None:
        self.terms = terms
        self._tables = {k: _Table([t for t in terms if t.kind == k]) for k in ("flops", "params")}

    @classmethod
    def from_params(cls, model: nn.Module, param_slices: dict[str, ParamSlices]) -> CostModel:
        """Parameter terms only (no FLOPs): for search spaces built by hand.
        ``param_slices``: the ZIG of every position of every prunable parameter dim."""
        terms = []
        for name, p in model.named_parameters():
            ps = param_slices.get(name)
            layers = ps.layers() if ps is not None else []
            dims = sorted({d for d, _ in layers})
            unit = 1
            for d, s in enumerate(p.shape):
                if d not in dims:
                    unit *= s
            vecs = [_layer(layers, d, ps.dims) for d in dims] if ps is not None else []
            outer = [_layer(layers, d, ps.outer) for d in dims] if ps is not None else []
            terms.append(CostTerm.from_vectors("params", unit, vecs, outer))
        return cls(terms)

    def flops(self, keep: torch.Tensor | None = None) -> float:
        return self._tables["flops"].total(keep)

    def params(self, keep: torch.Tensor | None = None) -> float:
        return self._tables["params"].total(keep)

    def marginal(self, kind: str, num_zigs: int) -> torch.Tensor:
        return self._tables[kind].marginal(num_zigs)

    def soft(self, kind: str, mask: torch.Tensor) -> torch.Tensor:
        """``kind`` ("flops"/"params") of a soft keep mask (float ``[num_zigs]``), differentiable
        in the mask (products of the coupled groups' kept sums); exact for 0/1 masks."""
        return self._tables[kind].soft(mask)

    def prunable_fraction(self, kind: str, prunable: torch.Tensor) -> float:
        return self._tables[kind].touched_fraction(prunable)
