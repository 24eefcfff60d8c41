"""Row view of the zero-invariant groups: per-ZIG norms, inner products and scaling, vectorised.

Every ZIG is a "row" gathered across its member slices; reductions are one ``index_add_`` per
(parameter, dim), scaling is one broadcast multiply per (parameter, dim). No loop over ZIGs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..space import SearchSpace


class ZigView:
    """Flat view of ``space`` over ``params`` (the optimizer's parameter list, in order).

    ``entries[i]`` is ``[(dim, vec)]`` for ``params[i]``: ``vec[pos]`` is the global ZIG id of
    position ``pos`` along ``dim``, with ``num_zigs`` (the "no ZIG" slot) instead of -1.
    """

    def __init__(self, space: SearchSpace, params: Sequence[nn.Parameter]) -> None:
        self.num_zigs = space.num_zigs
        by_id = {id(p): n for n, p in space.model.named_parameters(remove_duplicate=True)}
        self.entries: list[list[tuple[int, torch.Tensor]]] = []
        for p in params:
            ps = space.param_slices.get(by_id.get(id(p), ""))
            dims = []
            if ps is not None:
                for dim, vec in sorted(ps.dims.items()):
                    v = vec.clone()
                    v[v < 0] = self.num_zigs
                    dims.append((dim, v))
            self.entries.append(dims)
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
    def reduce(self, products: dict[int, torch.Tensor], device: torch.device) -> torch.Tensor:
        """Per-ZIG sum of tensors ``products[i]`` (shaped like ``params[i]`` or a core of it).
        Returns float64 ``[num_zigs]`` on ``device``."""
        out = torch.zeros(self.num_zigs + 1, dtype=torch.float64, device=device)
        for i, t in products.items():
            self.add_core(out, i, t)
        return out[:-1]

    # ----- fused per-parameter reductions (no full-size temporaries) -----------------------
    def core(
        self, i: int, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``a*b`` summed over the dims of ``params[i]`` that are in no ZIG (keepdim). Squares
        (``a is b``) are a norm reduction (one read, no temporary); other products go through
        ``out`` (a scratch of ``a``'s shape) when given. A core may BE ``out``: use it first."""
        od = self.other_dims(i, a)
        if a is b and od:
            return torch.linalg.vector_norm(a, dim=od, keepdim=True).square_()
        t = torch.mul(a, b, out=out) if out is not None else a * b
        return t.sum(dim=od, keepdim=True) if od else t

    def add_sq(self, out_ext: torch.Tensor, i: int, x: torch.Tensor) -> None:
        """``out_ext[z] += ||x_z||^2`` for ``x`` shaped like ``params[i]``: norm reductions only
        (one read per ZIG dim, or one read into a small core), never a temporary of x's size."""
        dims = [dim for dim, _ in self.entries[i]]
        if len(dims) > 1 and self.other_dims(i, x):
            self.add_core(out_ext, i, self.core(i, x, x))
            return
        for k, dim in enumerate(dims):
            other = [d for d in range(x.dim()) if d != dim]
            per_pos = torch.linalg.vector_norm(x, dim=other).square_() if other else x.square()
            out_ext.index_add_(0, self.vec(i, k, out_ext.device), per_pos.to(out_ext))

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

    def dots(
        self, a: dict[int, torch.Tensor], b: dict[int, torch.Tensor], device: torch.device
    ) -> torch.Tensor:
        """Per-ZIG inner products ``<a_g, b_g>`` (keys of ``a`` that are also in ``b``)."""
        return self.reduce(self.cores(a, b), device)

    def cores(
        self, a: dict[int, torch.Tensor], b: dict[int, torch.Tensor]
    ) -> dict[int, torch.Tensor]:
        """``a*b`` summed over every dim that is in no ZIG (keepdim): small tensors such as
        ``[out, in, 1, 1]`` for a conv weight, from which all per-ZIG sums follow cheaply."""
        out = {}
        for i in a:
            if i not in b:
                continue
            t = a[i] * b[i]
            zdims = {dim for dim, _ in self.entries[i]}
            other = [d for d in range(t.dim()) if d not in zdims]
            out[i] = t.sum(dim=other, keepdim=True) if other else t
        return out

    def multiplier_sum(self, i: int, p: torch.Tensor, values_ext: torch.Tensor) -> torch.Tensor:
        """Sum over dims of ``values_ext[vec]`` broadcast along each dim (cf. `multiplier`)."""
        m = None
        for k, (dim, _) in enumerate(self.entries[i]):
            v = values_ext.to(p.device)[self.vec(i, k, p.device)].to(p.dtype)
            v = v.view(self._bshape(p.dim(), dim, p.shape[dim]))
            m = v if m is None else m + v
        assert m is not None
        return m

    def positions(self, i: int, mask_ext: torch.Tensor, device: torch.device):
        """``[(dim, positions)]`` of ``params[i]`` that lie in ZIGs flagged in ``mask_ext``."""
        out = []
        for k, (dim, _) in enumerate(self.entries[i]):
            pos = torch.nonzero(mask_ext.to(device)[self.vec(i, k, device)]).flatten()
            if pos.numel():
                out.append((dim, pos))
        return out

    # ----- broadcast per-ZIG values back onto a parameter ----------------------------------
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


def ext(values: torch.Tensor, fill: float | bool) -> torch.Tensor:
    """Append the "no ZIG" slot to a per-ZIG vector."""
    return torch.cat([values, values.new_full((1,), fill)])
