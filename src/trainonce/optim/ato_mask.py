"""Applying a (soft) keep mask over the ZIGs to any analysed model, and ATO's resource loss.

A mask scales every member slice of every ZIG by the ZIG's value, through
`torch.func.functional_call`: no per-architecture gates, the model's own parameters untouched.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.distributed.fsdp import FSDPModule

from ..space import SearchSpace
from .budgets import CostBudget
from .zigview import ZigView, ext


class _Runner(nn.Module):
    """Holds the model as a submodule so `functional_call` can swap its parameters while an
    arbitrary callable (e.g. a user's ``loss_fn`` that calls the model) runs."""

    def __init__(self, model: nn.Module, fn: Callable[[], Any]) -> None:
        super().__init__()
        self.model = model
        self._fn = fn

    def forward(self) -> Any:
        return self._fn()


class MaskApplier:
    """Runs ``space.model`` with every ZIG's slices multiplied by a mask value.

    The masked weights are ``p.detach() * multiplier(mask)``: gradients reach the mask only
    (the controller), never the model's ``.grad``. With a 0/1 mask the forward pass equals the
    model with the 0-ZIGs zeroed (`SearchSpace.set_zero`) exactly; with all ones it equals the
    unmasked model exactly. A ZIG that also owns a consumer's input slices (as pruning removes
    them) has those scaled too: for the hard masks ATO applies this changes nothing; the
    straight-through gradient sums over all of the ZIG's slices.
    """

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        named = dict(space.model.named_parameters(remove_duplicate=True))
        self.names = list(named)
        self.view = ZigView(space, list(named.values()))  # global shapes, also of DTensors

    def masked_params(self, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{name: masked tensor}`` for every parameter with a ZIG slice; the parameters are
        looked up by name now (under FSDP2, inside `gathered`, the unsharded ones)."""
        named = dict(self.space.model.named_parameters(remove_duplicate=True))
        out = {}
        for i in self.view.with_zigs:
            p = named[self.names[i]]
            values = ext(mask.to(device=p.device, dtype=p.dtype), 1.0)
            out[self.names[i]] = p.detach() * self.view.multiplier(i, p, values)
        return out

    @contextlib.contextmanager
    def gathered(self) -> Iterator[None]:
        """FSDP2: every FSDP module's parameters unsharded (all-gathered once) and kept so
        through forward AND backward, so that `functional_call`'s masked tensors are not
        replaced by FSDP's pre-forward and the backward to the mask reads live weights; then
        resharded. A no-op without FSDP modules. FSDP2 has no getter for the reshard settings:
        they are left as ``fully_shard``'s default sets them (after forward: not the root, every
        other module; after backward: all)."""
        mods = [m for m in self.space.model.modules() if isinstance(m, FSDPModule)]
        inner = {id(s) for m in mods for s in m.modules() if s is not m}
        for m in mods:
            m.reshard()  # a root left unsharded by an earlier forward holds stale weights
            m.set_reshard_after_forward(False, recurse=False)
            m.set_reshard_after_backward(False, recurse=False)
            m.unshard()
        try:
            yield
        finally:
            for m in mods:
                m.reshard()
                m.set_reshard_after_forward(id(m) in inner, recurse=False)
                m.set_reshard_after_backward(True, recurse=False)

    def run(self, mask: torch.Tensor, fn: Callable[[], Any]) -> Any:
        """``fn()`` while the model's parameters are the masked ones (``fn`` calls the model)."""
        prefixed = {"model." + n: t for n, t in self.masked_params(mask).items()}
        runner = _Runner(self.space.model, fn)
        return torch.func.functional_call(runner, prefixed, (), strict=False)

    def __call__(self, mask: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        """The model's output on ``args``/``kwargs`` under ``mask`` (`run` needs `gathered`
        around it and its backward under FSDP2; this takes it itself)."""
        with self.gathered():
            return torch.func.functional_call(
                self.space.model, self.masked_params(mask), args, kwargs, strict=False
            )


def resource_loss(
    kept: torch.Tensor, target: float, weight: float = 4.0, margin: float = 0.005
) -> torch.Tensor:
    """ATO's budget term: ``w * log(max(R, p + d) / p)`` when ``R > p``, else
    ``w * log(p / min(R, p - d))``, with ``R = kept`` (a differentiable share), ``p = target``."""
    p = float(target)
    if not 0.0 < p - margin < p + margin:
        raise ValueError(f"need 0 < target - margin, got target {p}, margin {margin}")
    if bool(kept > p):
        return weight * torch.log(torch.clamp(kept, min=p + margin) / p)
    return weight * torch.log(p / torch.clamp(kept, max=p - margin))


def kept_share(
    space: SearchSpace, budget: CostBudget, mask: torch.Tensor
) -> tuple[torch.Tensor, float]:
    """(kept share of the prunable ``budget`` cost under ``mask``, differentiable; the share of
    the dense cost that no mask changes)."""
    dense = budget.dense(space)
    fixed = dense * budget.fixed_share(space)
    movable = dense - fixed
    if not movable > 0 or not math.isfinite(movable):
        raise ValueError(f"the search space has no prunable {budget.label}")
    return (budget.soft(space, mask) - fixed) / movable, fixed / dense
