"""The "no ZIG" slot: a position in no prunable ZIG has ZIG id -1. Per-ZIG vectors get one
extra slot at the end for it, so a lookup by position is a single index, without masking."""

from __future__ import annotations

import torch


def slot_index(zig_ids: torch.Tensor, num_zigs: int) -> torch.Tensor:
    """ZIG ids with -1 replaced by ``num_zigs`` (the extra slot); a new tensor."""
    return torch.where(zig_ids < 0, num_zigs, zig_ids)


def with_slot(values: torch.Tensor, fill: float | bool) -> torch.Tensor:
    """A per-ZIG vector with the "no ZIG" slot appended, holding ``fill``."""
    return torch.cat([values, values.new_full((1,), fill)])


def per_position(values: torch.Tensor, zig_ids: torch.Tensor, fill: float | bool) -> torch.Tensor:
    """``values`` (per ZIG) looked up for every position of ``zig_ids``; ``fill`` where a
    position is in no ZIG. Computed on ``values``' device."""
    idx = slot_index(zig_ids.to(values.device), values.numel())
    return with_slot(values, fill)[idx]
