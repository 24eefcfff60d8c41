"""Per-step multiplicative scaling of ZIG slices across many parameters from one gather: the
cheap step of the half-space optimizers between two refreshes of their per-ZIG statistics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from .zigview import ZigView


class RowScale:
    """``x *= prod_k values_ext[vec_k]`` over the ZIG dims ``dims[i]`` of ``params[i]``.

    The per-position values of every (parameter, dim) are one gather into a flat buffer (the
    column dims pre-spread over their trailing taps), so a step costs one small gather plus one
    streaming in-place multiply per (parameter, dim), with no per-parameter index work."""

    def __init__(
        self,
        view: ZigView,
        params: Sequence[torch.Tensor],
        dims: Mapping[int, Sequence[int]],
        device: torch.device,
    ) -> None:
        self._parts: list[tuple[int, int, tuple[int, int], int, int, tuple[int, int]]] = []
        index, off = [], 0
        for i, ks in dims.items():
            for k in ks:
                ax = view.matrices[i][k]
                vec = view.vec(i, k, device)
                if not ax.rows and ax.trail > 1:
                    vec = vec.repeat_interleave(ax.trail)
                shape = (ax.n, 1) if ax.rows else (1, vec.numel())
                self._parts.append((i, k, ax.shape2d, off, vec.numel(), shape))
                index.append(vec)
                off += vec.numel()
        self._index = torch.cat(index) if index else torch.zeros(0, dtype=torch.long)
        self._view = view
        # per dtype: a flat buffer the gather writes into and its per-part views, made once
        self._bufs: dict[torch.dtype, tuple[torch.Tensor, list[torch.Tensor]]] = {}

    def __bool__(self) -> bool:
        return bool(self._parts)

    def _buffer(self, dtype: torch.dtype) -> tuple[torch.Tensor, list[torch.Tensor]]:
        buf = self._bufs.get(dtype)
        if buf is None:
            flat = torch.empty(self._index.numel(), dtype=dtype, device=self._index.device)
            views = [flat[off : off + n].view(shape) for _, _, _, off, n, shape in self._parts]
            buf = self._bufs[dtype] = (flat, views)
        return buf

    def mul_(self, params: Sequence[torch.Tensor], values_ext: torch.Tensor) -> None:
        """Scale every covered slice by ``values_ext`` (``[num_zigs + 1]``, on the device)."""
        if not self._parts:
            return
        filled: set[torch.dtype] = set()
        for j, (i, k, shape2d, _, _, _) in enumerate(self._parts):
            p = params[i]
            flat, views = self._buffer(p.dtype)
            if p.dtype not in filled:  # one gather per dtype per step
                torch.index_select(values_ext.to(p.dtype), 0, self._index, out=flat)
                filled.add(p.dtype)
            if p.is_contiguous():
                p.view(shape2d).mul_(views[j])
            else:  # e.g. channels_last: broadcast the unspread values along the dim
                self._view.factors(i, p, values_ext, [k]).mul_(p)
