"""The 2-D views behind `ZigView`'s hot paths: a parameter along one ZIG dim as a matrix
(`DimMatrix`) and per-entry multipliers applied dim by dim (`Factors`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DimMatrix:
    """ZIG dim ``dim`` (length ``n``) of a parameter seen as the 2-D matrix ``shape2d``:
    ``[n, trail]`` when ``lead == 1`` (rows are ZIG positions), else ``[lead, n * trail]``."""

    dim: int
    lead: int
    n: int
    trail: int

    @classmethod
    def of(cls, shape: Sequence[int], dim: int) -> DimMatrix:
        return cls(dim, math.prod(shape[:dim]), shape[dim], math.prod(shape[dim + 1 :]))

    @property
    def rows(self) -> bool:
        return self.lead == 1

    @property
    def shape2d(self) -> tuple[int, int]:
        return (self.n, self.trail) if self.rows else (self.lead, self.n * self.trail)

    def spread(self, values: torch.Tensor) -> torch.Tensor:
        """Per-position ``values [n]`` as a factor that broadcasts against ``shape2d``."""
        if self.rows:
            return values.view(self.n, 1)
        if self.trail > 1:
            values = values.repeat_interleave(self.trail)
        return values.view(1, -1)

    def sums(self, t: torch.Tensor) -> torch.Tensor:
        """Per-position sums ``[n]`` of ``t`` (contiguous, the parameter's shape)."""
        m = t.view(self.shape2d)
        if self.rows:
            return m.sum(1)
        col = m.sum(0)
        return col.view(self.n, self.trail).sum(1) if self.trail > 1 else col

    def sq_sums(self, t: torch.Tensor) -> torch.Tensor:
        """Per-position ``||t_pos||^2`` without a temporary; only where ``rows``."""
        return torch.linalg.vector_norm(t.view(self.shape2d), dim=1).square_()


class Factors:
    """A per-entry multiplier of one parameter: the product of one small factor per ZIG dim,
    applied as one streaming multiply each (see `DimMatrix`); broadcast factors for tensors
    that are not contiguous (e.g. channels_last grads)."""

    def __init__(self, shape: Sequence[int], parts: Sequence[tuple[DimMatrix, torch.Tensor]]):
        self._fast = [(ax.shape2d, ax.spread(v)) for ax, v in parts]
        nd = len(shape)
        self._bcast = [v.view([ax.n if d == ax.dim else 1 for d in range(nd)]) for ax, v in parts]

    def mul_(self, t: torch.Tensor) -> torch.Tensor:
        if t.is_contiguous():
            for shape2d, f in self._fast:
                t.view(shape2d).mul_(f)
        else:
            for f in self._bcast:
                t.mul_(f)
        return t

    def scale_(self, t: torch.Tensor, alpha: float) -> torch.Tensor:
        """``t *= prod(1 + alpha * factor)``: per-step scaling by a changing scalar with a fixed
        0/1 pattern (small per-step factors, then one streaming multiply per dim)."""
        if t.is_contiguous():
            for shape2d, f in self._fast:
                t.view(shape2d).mul_(f.mul(alpha).add_(1.0))
        else:
            for f in self._bcast:
                t.mul_(f.mul(alpha).add_(1.0))
        return t

    def mul(self, t: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``t * factors`` into ``out`` (contiguous, ``t``'s shape) or a new tensor."""
        if out is None:
            out = torch.empty(t.shape, dtype=t.dtype, device=t.device)
        if not (self._fast and t.is_contiguous()):
            return self.mul_(out.copy_(t))
        (shape2d, f), *rest = self._fast
        torch.mul(t.view(shape2d), f, out=out.view(shape2d))
        for shape2d, f in rest:
            out.view(shape2d).mul_(f)
        return out
