"""Per-layer view of a slim model: for every prunable group, the modules whose output it is, its
channels (or heads) before and after, and the share of FLOPs and parameters kept where it acts.
A structure of erasing mode (a whole branch) is one row, named as its group is, kept or removed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch

STRUCTURE = "whole structure"  # erasing mode: a branch / sublayer, kept or removed


@dataclass(frozen=True)
class LayerRow:
    """One prunable group. ``flops`` / ``params``: (dense, kept) of the ops and parameters
    that this group's channels touch (its producers and their consumers), under the final
    keep mask, so the coupling with neighbouring groups is included."""

    modules: tuple[str, ...]
    group: str
    unit: str  # "channels", "heads", "groups of k channels" or STRUCTURE
    before: int
    after: int
    flops: tuple[float, float]
    params: tuple[float, float]

    @property
    def name(self) -> str:
        """The producing module, ``+ second`` and ``(+n more)`` for residual-coupled groups."""
        head = " + ".join(self.modules[:2])
        return head + (f" (+{len(self.modules) - 2} more)" if len(self.modules) > 2 else "")

    @property
    def kept_share(self) -> float:
        return self.after / self.before if self.before else 1.0


def module_of(param: str) -> str:
    """``layer1.conv1.weight`` -> ``layer1.conv1``; a parameter of the root -> ``(model)``."""
    return param.rpartition(".")[0] or "(model)"


def _output_dim(model: torch.nn.Module, module: str) -> int:
    # transformers' Conv1D (GPT-2) stores its weight as [in, out]; everything else [out, in, ...]
    try:
        mod = model.get_submodule("" if module == "(model)" else module)
    except AttributeError:
        return 0
    return 1 if _is_hf_conv1d(mod) else 0


def _is_hf_conv1d(mod: torch.nn.Module) -> bool:
    utils = sys.modules.get("transformers.pytorch_utils")  # loaded by any model that has one
    return utils is not None and isinstance(mod, getattr(utils, "Conv1D", ()))


def _producers(group, model: torch.nn.Module, ndim: dict[str, int]) -> tuple[list[str], int]:
    """Modules whose output channels the group is (members on the output dim of a weight with
    two or more dims), in member order, and the positions one ZIG owns there."""
    out, width = [], 1
    for m in group.members:
        mod = module_of(m.param)
        if ndim.get(m.param, 0) >= 2 and m.dim == _output_dim(model, mod) and mod not in out:
            out.append(mod)
            width = max(width, m.index.shape[1])
    if not out:  # no weight produces it (e.g. a norm-only or an embedding group): all owners
        out = list(dict.fromkeys(module_of(m.param) for m in group.members))
    return out, width


def _unit(width: int, model: torch.nn.Module, module: str) -> str:
    if width == 1:
        return "channels"
    try:
        linear = isinstance(model.get_submodule(module), torch.nn.Linear)
    except AttributeError:
        linear = False
    return "heads" if linear else f"groups of {width} channels"


def _term_costs(space, keep: torch.Tensor, group_of_zig: torch.Tensor, n_groups: int):
    """Per group: (dense, kept) FLOPs and params summed over the cost terms touching it."""
    sums = torch.zeros(2, n_groups, 2, dtype=torch.float64)  # [flops|params, group, dense|kept]
    keep_ext = torch.cat([keep.bool().cpu(), torch.ones(1, dtype=torch.bool)])  # slot -1: kept
    for t in space.costs.terms:
        dense = kept = float(t.unit)
        touched: set[int] = set()
        for v in t.vectors:
            dense *= v.numel()
            kept *= int(keep_ext[v].sum())
            ids = v[v >= 0]
            if ids.numel():
                touched.update(torch.unique(group_of_zig[ids]).tolist())
        k = 0 if t.kind == "flops" else 1
        for g in touched:
            sums[k, g, 0] += dense
            sums[k, g, 1] += kept
    return sums


def layer_rows(space, keep: torch.Tensor) -> list[LayerRow]:
    """One row per prunable group, the most-cut first (kept share ascending, then the bigger
    FLOPs first). ``keep``: bool ``[num_zigs]``, the ZIGs the slim model keeps."""
    group_of_zig = torch.empty(space.num_zigs, dtype=torch.long)
    for i, g in enumerate(space.groups):
        group_of_zig[g.offset : g.offset + g.size] = i
    sums = _term_costs(space, keep, group_of_zig, len(space.groups))
    ndim = {n: p.dim() for n, p in space.model.named_parameters()}
    rows = []
    for i, g in enumerate(space.groups):
        if not g.prunable:
            continue
        if getattr(g, "kind", "channel") == "structure":  # erasing mode: one whole unit
            mods, unit = [g.name], STRUCTURE
        else:
            mods, width = _producers(g, space.model, ndim)
            unit = _unit(width, space.model, mods[0])
        rows.append(
            LayerRow(
                modules=tuple(mods),
                group=g.name,
                unit=unit,
                before=g.size,
                after=int(keep[g.offset : g.offset + g.size].sum()),
                flops=(float(sums[0, i, 0]), float(sums[0, i, 1])),
                params=(float(sums[1, i, 0]), float(sums[1, i, 1])),
            )
        )
    rows.sort(key=lambda r: (r.kept_share, -r.flops[0]))
    return rows
