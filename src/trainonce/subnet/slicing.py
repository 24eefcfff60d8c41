"""Which positions of every parameter and buffer survive, and cutting tensors accordingly."""

from __future__ import annotations

import torch
from torch import nn

from ..space.search_space import SearchSpace
from ..space.slots import per_position


def removal_plan(space: SearchSpace, zero: torch.Tensor) -> dict[str, dict[int, torch.Tensor]]:
    """name -> dim -> kept positions, for every parameter and buffer that loses positions (a
    position goes when its channel ZIG or its structure ZIG is zero)."""
    plan: dict[str, dict[int, torch.Tensor]] = {}
    zero = zero.bool().cpu()
    sources = [(n, ps.layers()) for n, ps in space.param_slices.items()]
    for name, dims in space.buffer_slices.items():
        outer = space.buffer_outer.get(name, {})
        sources.append((name, [*dims.items(), *outer.items()]))
    for name, layers in sources:
        gone: dict[int, torch.Tensor] = {}
        for d, vec in layers:
            g = per_position(zero, vec, False)
            gone[d] = gone[d] | g if d in gone else g
        for d, g in gone.items():
            if bool(g.any()):
                plan.setdefault(name, {})[d] = torch.nonzero(~g).flatten()
    return plan


def cut(t: torch.Tensor, dims: dict[int, torch.Tensor]) -> torch.Tensor:
    for d, keep in dims.items():
        t = t.index_select(d, keep.to(t.device))
    return t.contiguous()


@torch.no_grad()
def apply_plan(model: nn.Module, plan: dict[str, dict[int, torch.Tensor]], prefix: str = ""
               ) -> None:
    """Replace every planned parameter/buffer of ``model`` (shared ones once) by its cut."""
    new_params: dict[int, nn.Parameter] = {}
    old_params: list[nn.Parameter] = []  # alive until the end, so no id() is reused
    for mod_name, module in model.named_modules(remove_duplicate=False):
        for attr, p in list(module.named_parameters(recurse=False)):
            full = f"{mod_name}.{attr}" if mod_name else attr
            key = full.removeprefix(prefix)
            if id(p) not in new_params:
                dims = plan.get(key)
                if dims is None:
                    continue
                new_params[id(p)] = nn.Parameter(cut(p.data, dims), requires_grad=p.requires_grad)
                old_params.append(p)
            setattr(module, attr, new_params[id(p)])
        for attr, b in list(module.named_buffers(recurse=False)):
            full = f"{mod_name}.{attr}" if mod_name else attr
            dims = plan.get(full.removeprefix(prefix))
            if dims is not None and b is not None and b.dim():
                setattr(module, attr, cut(b, dims))  # nn.Module keeps it a buffer
    del old_params
