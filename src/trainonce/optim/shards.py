"""The optimizer's side of FSDP2 (`trainonce.sharding`): every step works on each rank's local
rows, the optimizer state stays DTensors laid out like their parameters (so
`torch.distributed.checkpoint` saves it sharded), and per-ZIG partial sums meet in one
all-reduce per reduction. Without sharded parameters every method is a pass-through.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from ..sharding import all_reduce_sum, like, local, row_range, shard_group
from .zigview import ZigView


class Shards:
    """``params`` (the optimizer's list) as this rank holds them; narrows ``view`` to the local
    rows of every sharded parameter (see `ZigView.narrow`)."""

    def __init__(self, params: Sequence[torch.Tensor], view: ZigView) -> None:
        self.group = shard_group(params)
        self.sharded = [isinstance(p, DTensor) for p in params]
        for i, p in enumerate(params):
            rows = row_range(p)
            if rows is not None:
                view.narrow(i, p.shape, *rows)

    @property
    def active(self) -> bool:
        """Whether some parameter is sharded (then the reductions are collectives: every rank
        must take every step, and call `metrics`, together)."""
        return self.group is not None

    @staticmethod
    def locals(params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The local shards (aliases) of ``params``; taken afresh every step, as FSDP2 may
        re-register its sharded parameters (e.g. after ``to_empty``)."""
        return [local(p) for p in params]

    @staticmethod
    def grad(p: torch.Tensor) -> torch.Tensor | None:
        return None if p.grad is None else local(p.grad)

    def state(self, i: int, state: dict) -> dict:
        """``state`` with local shards in place of DTensors (aliases: in-place updates reach
        the stored state); ``state`` itself for a plain parameter."""
        if not self.sharded[i]:
            return state
        return {k: local(v) if isinstance(v, torch.Tensor) else v for k, v in state.items()}

    def keep(self, i: int, p: torch.Tensor, state: dict, local_state: dict) -> None:
        """Store what the step added to ``local_state`` in ``state``: buffers shaped like the
        shard as DTensors laid out like ``p`` (the step counter stays a plain tensor, as torch's
        optimizers keep it under FSDP2)."""
        if not self.sharded[i]:
            return
        shard_shape = local(p).shape
        for k, v in local_state.items():
            cur = state.get(k)
            if isinstance(cur, DTensor) or cur is v:
                continue  # an alias of the stored buffer, updated in place
            if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape == shard_shape:
                v = like(v, p)
            state[k] = v

    def sum(self, *parts: torch.Tensor) -> list[torch.Tensor]:
        """Per-ZIG partial sums of every rank added up: one all-reduce for all ``parts``."""
        return all_reduce_sum(parts, self.group)

    def all_true(self, flag: bool, device: torch.device) -> bool:
        """``flag`` on every rank (e.g. finite gradients: every rank must skip the same steps)."""
        if not self.active:
            return flag
        t = torch.tensor([0.0 if flag else 1.0], device=device)
        dist.all_reduce(t, group=self.group)
        return bool(t.item() == 0)

    def mean(self, value: float, device: torch.device) -> float:
        """``value`` averaged over the ranks (a loss every rank must see the same)."""
        if not self.active:
            return value
        t = torch.tensor([float(value)], dtype=torch.float64, device=device)
        dist.all_reduce(t, group=self.group)
        return float(t.item()) / dist.get_world_size(self.group)
