"""Parameters sharded by FSDP2 (`torch.distributed.fsdp.fully_shard`): DTensors placed
``Shard(0)`` (uneven, torch.chunk's split) over a shard mesh dim, possibly ``Replicate`` over
others (HSDP).

Everything per ZIG is computed on each rank's local rows (`DTensor.to_local`) and summed over
the shard group with one all-reduce: the weights are never gathered. Plain tensors pass through
unchanged, so the unsharded path costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor, Replicate, Shard


def local(t: torch.Tensor) -> torch.Tensor:
    """The rank's local shard of a DTensor (an alias: in-place changes reach the DTensor), or
    ``t`` itself."""
    return t.to_local() if isinstance(t, DTensor) else t


def _shard_dim(t: DTensor) -> int:
    """The mesh dim ``t`` is sharded over along tensor dim 0; other layouts are refused (the
    per-ZIG maps slice rows only)."""
    dims = [i for i, pl in enumerate(t.placements) if not isinstance(pl, Replicate)]
    bad = [pl for pl in t.placements if not isinstance(pl, (Replicate, Shard))]
    if bad or len(dims) != 1 or t.placements[dims[0]] != Shard(0):
        raise NotImplementedError(
            f"trainonce optimizers take parameters sharded Shard(0) over one mesh dim (FSDP2's "
            f"fully_shard), got placements {tuple(t.placements)}")
    return dims[0]


def row_range(t: torch.Tensor) -> tuple[int, int] | None:
    """``(start, stop)``: the rows of dim 0 this rank holds of a sharded tensor (None for a
    plain tensor). FSDP2 splits like ``torch.chunk``: ``ceil(n / world)`` rows per rank, the
    last ones shorter or empty."""
    if not isinstance(t, DTensor):
        return None
    k = _shard_dim(t)
    mesh = t.device_mesh
    n, world = t.shape[0], mesh.size(k)
    chunk = -(-n // world) if n else 0
    start = min(mesh.get_local_rank(k) * chunk, n)
    stop = min(start + chunk, n)
    if stop - start != t.to_local().shape[0]:  # a layout other than torch.chunk's
        raise NotImplementedError(
            f"unexpected local shard of {tuple(t.shape)}: {tuple(t.to_local().shape)} rows, "
            f"expected {stop - start}")
    return start, stop


def shard_group(tensors: Sequence[torch.Tensor]) -> dist.ProcessGroup | None:
    """The process group ``tensors`` are split over (the all-reduce of per-ZIG partial sums
    runs on it), None when none is sharded. One group for all, and all or none sharded: a plain
    tensor's sums would be counted once per rank (and nothing keeps it equal across ranks)."""
    groups = {}
    for t in tensors:
        if isinstance(t, DTensor):
            g = t.device_mesh.get_group(_shard_dim(t))
            groups[id(g)] = g
    if len(groups) > 1:
        raise NotImplementedError("parameters sharded over different process groups")
    if groups and not all(isinstance(t, DTensor) for t in tensors):
        raise ValueError(
            "some parameters are sharded by FSDP2 and some are not: apply fully_shard to the "
            "root module too (fully_shard(model) after its submodules), so that every "
            "parameter is sharded")
    return next(iter(groups.values()), None)


def all_reduce_sum(parts: Sequence[torch.Tensor], group: dist.ProcessGroup | None
                   ) -> list[torch.Tensor]:
    """``parts`` (1-D, one dtype and device) summed over ``group`` in ONE all-reduce; unchanged
    when ``group`` is None."""
    if group is None or not parts:
        return list(parts)
    flat = torch.cat([p.reshape(-1) for p in parts])
    dist.all_reduce(flat, group=group)
    return list(flat.split([p.numel() for p in parts]))


def reshard(model: nn.Module) -> None:
    """Reshard every FSDP module of ``model`` (a no-op for sharded ones and plain models).
    FSDP2's root keeps its all-gathered parameters after a forward without backward (e.g. a
    loss measured under ``no_grad``), and its next forward uses them as they were: after
    changing the sharded parameters in place, this makes the next forward gather them again."""
    for m in model.modules():
        if isinstance(m, FSDPModule):
            m.reshard()


def like(t: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """``t`` (a local tensor shaped like ``param``'s shard) as a DTensor laid out like
    ``param``; ``t`` itself when ``param`` is plain."""
    if not isinstance(param, DTensor) or isinstance(t, DTensor):
        return t
    return DTensor.from_local(t, param.device_mesh, param.placements, run_check=False,
                              shape=param.shape, stride=param.stride())
