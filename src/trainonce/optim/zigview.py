"""Row view of the zero-invariant groups: per-ZIG norms, inner products and scaling, vectorised.

Every ZIG is a "row" gathered across its member slices; reductions are one ``index_add_`` per
(parameter, dim), scaling is one multiply per (parameter, dim). No loop over ZIGs.

Hot paths see a parameter along ZIG dim ``k`` as a 2-D matrix (`DimMatrix`): ``[n, rest]``
when ``k`` leads, else ``[lead, n*trail]``, with per-position values repeated over ``trail``. Every
multiply and reduction then streams along long contiguous rows: broadcasting an ``[out, in, 1,
1]`` factor over 3x3 conv taps instead is ~5x slower on CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..space import SearchSpace
from ..space.slots import slot_index, with_slot
from .zigmatrix import DimMatrix, Factors

__all__ = ["DimMatrix", "Factors", "ZigView", "ext"]


class ZigView:
    """Flat view of ``space`` over ``params`` (the optimizer's parameter list, in order).

    ``entries[i]`` is ``[(dim, vec)]`` for ``params[i]``: ``vec[pos]`` is the global ZIG id of
    position ``pos`` along ``dim``, with ``num_zigs`` (the "no ZIG" slot) instead of -1. A dim
    appears twice when its positions are also in structure ZIGs (erasing mode "both").
    """

    def __init__(self, space: SearchSpace, params: Sequence[nn.Parameter]) -> None:
        self.num_zigs = space.num_zigs
        by_id = {id(p): n for n, p in space.model.named_parameters(remove_duplicate=True)}
        self.entries: list[list[tuple[int, torch.Tensor]]] = []
        for p in params:
            ps = space.param_slices.get(by_id.get(id(p), ""))
            dims = []
            if ps is not None:  # channel ZIGs, then structure ZIGs (an entry may be in both)
                for dim, vec in [*sorted(ps.dims.items()), *sorted(ps.outer.items())]:
                    dims.append((dim, slot_index(vec, self.num_zigs)))
            self.entries.append(dims)
        self.matrices = [
            [DimMatrix.of(p.shape, dim) for dim, _ in e] for p, e in zip(params, self.entries)
        ]
        self.with_zigs = [i for i, e in enumerate(self.entries) if e]
        self._dev: dict[tuple[int, int, str], torch.Tensor] = {}
        # number of scalar entries each ZIG owns (for "average magnitude")
        count = torch.zeros(self.num_zigs + 1, dtype=torch.float64)
        for i in self.with_zigs:
            p = params[i]
            for dim, vec in self.entries[i]:
                per_pos = torch.full((p.shape[dim],), p.numel() / p.shape[dim], dtype=torch.float64)
                count.index_add_(0, vec, per_pos)
        self.numel = count[:-1]

    def narrow(self, i: int, shape: Sequence[int], start: int, stop: int) -> None:
        """See ``params[i]`` (global ``shape``) as its rows ``[start, stop)`` of dim 0 only, the
        local shard of a sharded parameter: dim 0's map is sliced, the matrices take the local
        shape. ``numel`` keeps the whole ZIG's count (the statistics are summed over ranks)."""
        local_shape = (stop - start, *shape[1:])
        self.entries[i] = [(d, v[start:stop] if d == 0 else v) for d, v in self.entries[i]]
        self.matrices[i] = [DimMatrix.of(local_shape, d) for d, _ in self.entries[i]]
        self._dev = {k: v for k, v in self._dev.items() if k[0] != i}

    # ----- index tensors on the parameter's device (moved lazily, cached) -------------------
    def vec(self, i: int, k: int, device: torch.device) -> torch.Tensor:
        key = (i, k, str(device))
        v = self._dev.get(key)
        if v is None:
            v = self.entries[i][k][1].to(device)
            self._dev[key] = v
        return v

    @staticmethod
    def _bshape(ndim: int, dim: int, n: int) -> list[int]:
        shape = [1] * ndim
        shape[dim] = n
        return shape

    # ----- reductions ----------------------------------------------------------------------
    def core(
        self, i: int, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``a*b`` summed over the dims of ``params[i]`` that are in no ZIG (keepdim): the path
        for tensors the 2-D views cannot see (not contiguous) and for `add_mixed`'s general
        layouts. ``out`` (a scratch of ``a``'s shape) takes the product when given."""
        od = self.other_dims(i, a)
        if a is b and od:
            return torch.linalg.vector_norm(a, dim=od, keepdim=True).square_()
        t = torch.mul(a, b, out=out) if out is not None else a * b
        return t.sum(dim=od, keepdim=True) if od else t

    def add_sq(
        self, out_ext: torch.Tensor, i: int, x: torch.Tensor, tmp: torch.Tensor | None = None
    ) -> None:
        """``out_ext[z] += ||x_z||^2`` for ``x`` shaped like ``params[i]``; ``tmp`` (x-sized
        scratch) takes ``x*x`` when more than a row norm is needed."""
        axes = self.matrices[i]
        if x.is_contiguous() and len(axes) == 1 and axes[0].rows:
            out_ext.index_add_(0, self.vec(i, 0, out_ext.device), axes[0].sq_sums(x).to(out_ext))
        else:
            self.add_dot(out_ext, i, x, x, tmp)

    def add_dot(
        self,
        out_ext: torch.Tensor,
        i: int,
        a: torch.Tensor,
        b: torch.Tensor,
        tmp: torch.Tensor | None = None,
    ) -> None:
        """``out_ext[z] += <a_z, b_z>``: one product (into ``tmp`` if given), then one streaming
        reduction per ZIG dim."""
        if not (a.is_contiguous() and b.is_contiguous()):
            self.add_core(out_ext, i, self.core(i, a, b))
            return
        self.add_sums(out_ext, i, torch.mul(a, b, out=tmp) if tmp is not None else a * b)

    def add_sums(self, out_ext: torch.Tensor, i: int, t: torch.Tensor) -> None:
        """``out_ext[z] += `` the sum of ``t`` (contiguous, ``params[i]``'s shape) over ZIG z."""
        for k, ax in enumerate(self.matrices[i]):
            out_ext.index_add_(0, self.vec(i, k, out_ext.device), ax.sums(t).to(out_ext))

    def add_mixed(
        self,
        out_ext: torch.Tensor,
        i: int,
        x: torch.Tensor,
        values_ext: torch.Tensor,
        tmp: torch.Tensor | None = None,
    ) -> None:
        """``out_ext[z] +=`` the sum over z's slice of ``params[i]`` of ``x^2`` times the values
        of the OTHER ZIG dims' positions (the cross terms of ``sum_k values_k * x^2``; the
        own-dim term is ``values * ||x_z||^2``). Dims (0, 1): ``x*x`` and two mat-vecs."""
        axes, dev = self.matrices[i], out_ext.device
        if len(axes) < 2:
            return
        vals = values_ext.to(dev)
        if [a.dim for a in axes] == [0, 1] and x.is_contiguous():
            a0, a1 = axes  # both see the same matrix [n0, n1 * trail1]
            sq = torch.mul(x, x, out=tmp).view(a0.shape2d)
            v0 = vals[self.vec(i, 0, dev)].to(x.dtype)
            v1 = vals[self.vec(i, 1, dev)].to(x.dtype)
            cols = torch.mv(sq.t(), v0)
            if a1.trail > 1:
                cols = cols.view(a1.n, a1.trail).sum(1)
            out_ext.index_add_(
                0, self.vec(i, 0, dev), torch.mv(sq, a1.spread(v1).view(-1)).to(out_ext)
            )
            out_ext.index_add_(0, self.vec(i, 1, dev), cols.to(out_ext))
            return
        core = self.core(i, x, x)
        per_dim = [
            vals[self.vec(i, k, dev)].to(x.dtype).view(self._bshape(x.dim(), a.dim, a.n))
            for k, a in enumerate(axes)
        ]
        for k, a in enumerate(axes):
            w = sum(v for j, v in enumerate(per_dim) if j != k)
            t = core * w
            other = [d for d in range(t.dim()) if d != a.dim]
            per_pos = t.sum(dim=other) if other else t  # sum(dim=[]) would reduce everything
            out_ext.index_add_(0, self.vec(i, k, dev), per_pos.to(out_ext))

    def scale_by_sum_(
        self,
        i: int,
        p: torch.Tensor,
        values_ext: torch.Tensor,
        alpha: float,
        ks: Sequence[int],
        tmp: torch.Tensor | None = None,
    ) -> None:
        """``p *= 1 + alpha * sum_{k in ks} values_ext[vec_k]`` (a SUM over dims, as a group
        penalty's gradient is): one streaming multiply, the multiplier built in ``tmp``."""
        dev, axes = p.device, self.matrices[i]
        vals = values_ext.to(dev)
        per = {k: vals[self.vec(i, k, dev)].to(p.dtype) for k in ks}
        if len(per) == 1:
            ((k, v),) = per.items()
            Factors(p.shape, [(axes[k], v.mul(alpha).add_(1))]).mul_(p)
        elif sorted(per) == [0, 1] and [a.dim for a in axes] == [0, 1] and p.is_contiguous():
            a0, a1 = axes
            m = tmp.view(a0.shape2d) if tmp is not None else None
            m = torch.add(
                a0.spread(per[0].mul(alpha).add_(1)), a1.spread(per[1]), alpha=alpha, out=m
            )
            p.view(a0.shape2d).mul_(m)
        elif per:
            shape = p.dim()
            total = sum(v.view(self._bshape(shape, axes[k].dim, axes[k].n)) for k, v in per.items())
            p.mul_(total.mul_(alpha).add_(1))

    def factors(
        self, i: int, p: torch.Tensor, values_ext: torch.Tensor, ks: Sequence[int] | None = None
    ) -> Factors:
        """`Factors` of ``values_ext[vec]`` over the ZIG dims ``ks`` (default: all) of
        ``params[i]``: the same multiplier as `multiplier`, applied dim by dim."""
        dev = p.device
        vals = values_ext.to(dev)
        ks = range(len(self.entries[i])) if ks is None else ks
        return Factors(
            p.shape, [(self.matrices[i][k], vals[self.vec(i, k, dev)].to(p.dtype)) for k in ks]
        )

    def other_dims(self, i: int, a: torch.Tensor) -> list[int]:
        """Dims of ``a`` (shaped like ``params[i]``) in no ZIG and longer than 1."""
        zd = {dim for dim, _ in self.entries[i]}
        return [d for d in range(a.dim()) if d not in zd and a.shape[d] > 1]

    def add_core(self, out_ext: torch.Tensor, i: int, core: torch.Tensor) -> None:
        """``out_ext[z] += `` the sum of ``core`` over ZIG ``z`` (per ZIG dim of ``params[i]``)."""
        for k, (dim, _) in enumerate(self.entries[i]):
            other = [d for d in range(core.dim()) if d != dim]
            per_pos = core.sum(dim=other) if other else core
            out_ext.index_add_(0, self.vec(i, k, out_ext.device), per_pos.to(out_ext))

    def multiplier(self, i: int, p: torch.Tensor, values_ext: torch.Tensor) -> torch.Tensor:
        """Product over dims of ``values_ext[vec]`` broadcast along each dim: a tensor that
        broadcasts against ``p`` (e.g. ``[out, in, 1, 1]`` for a conv weight)."""
        m = None
        for k, (dim, _) in enumerate(self.entries[i]):
            v = values_ext.to(p.device)[self.vec(i, k, p.device)].to(p.dtype)
            v = v.view(self._bshape(p.dim(), dim, p.shape[dim]))
            m = v if m is None else m * v
        assert m is not None
        return m

    def touches(self, i: int, mask_ext_cpu: torch.Tensor) -> bool:
        """Whether ``params[i]`` has a position in a ZIG flagged in ``mask_ext_cpu`` (CPU)."""
        return any(bool(mask_ext_cpu[v].any()) for _, v in self.entries[i])

    def dims_touching(self, i: int, mask_ext_cpu: torch.Tensor) -> list[int]:
        """Indices ``k`` of the ZIG dims of ``params[i]`` with a position flagged (CPU)."""
        return [k for k, (_, v) in enumerate(self.entries[i]) if bool(mask_ext_cpu[v].any())]


ext = with_slot  # the optimizers' short name for it
