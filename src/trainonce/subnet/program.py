"""Fallback slim model: the exported graph itself, with cut weights and updated size arguments.

Used when a model's own forward keeps sizes we cannot update (e.g. `nn.MultiheadAttention`,
reshapes to `self.num_heads`). Every size argument is recomputed from the channel labels by the
op's `resize` entry in the op table (`graph/table.py`).
"""

from __future__ import annotations

import torch
from torch import fx, nn

from ..graph import registry, table  # noqa: F401 - table registers the built-in rules
from ..graph.labels import Labels, spans
from ..space.analysis import Analysis
from ..space.search_space import SearchSpace
from .slicing import apply_plan

aten = torch.ops.aten


class _Sizes:
    """Kept positions along each dim of each traced value, given the zero ZIGs."""

    def __init__(self, analysis: Analysis, zero: torch.Tensor) -> None:
        self.analysis = analysis
        self.zero_ext = torch.cat([zero.bool().cpu(), torch.tensor([False])])

    def kept(self, lab: Labels, d: int) -> torch.Tensor | None:
        ax = lab.axis_spanning(d) if isinstance(lab, Labels) else None
        if ax is None:
            return None
        zig = self.analysis.zigs_of(ax)
        if len(spans(ax)) > 1 and bool((zig == zig.narrow(d, 0, 1)).all()):
            return None  # the removal unit spans other dims: this one never shrinks
        z = zig[tuple(slice(None) if k == d else 0 for k in range(ax.dim()))].clone()
        z[z < 0] = self.zero_ext.numel() - 1
        return torch.nonzero(~self.zero_ext[z]).flatten()

    def shape(self, lab: Labels) -> list[int]:
        out = []
        for d, s in enumerate(lab.shape):
            k = self.kept(lab, d)
            out.append(s if k is None else int(k.numel()))
        return out

    def of(self, node: fx.Node):
        return self.analysis.labels_of(node.name)


def slim_program(space: SearchSpace, zero: torch.Tensor, plan: dict) -> nn.Module:
    """A `torch.fx.GraphModule` computing the slim model, built from the traced program."""
    analysis = space.analysis
    if analysis is None:
        raise ValueError("slim_program needs a SearchSpace made by trainonce.analyze")
    program = analysis.traced.program
    # a plain GraphModule over the unlifted graph: it supports train()/eval() like any module
    unlifted = program.module()
    gm = fx.GraphModule(unlifted, unlifted.graph)
    sz = _Sizes(analysis, zero)
    for node in list(gm.graph.nodes):
        if node.op != "call_function":
            continue
        if getattr(node.target, "overloadpacket", None) is aten._assert_tensor_metadata:
            gm.graph.erase_node(node)
            continue
        entry = registry.lookup(node.target)
        if entry is not None and entry.resize is not None:
            entry.resize(node, sz)
    gm.graph.lint()
    gm.recompile()
    apply_plan(gm, plan, prefix="model.")
    return gm
