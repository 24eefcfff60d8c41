"""Fallback slim model: the exported graph itself, with cut weights and updated size arguments.

Used when a model's own forward keeps sizes we cannot update (e.g. `nn.MultiheadAttention`,
reshapes to `self.num_heads`). Every size argument is recomputed from the channel labels.
"""

from __future__ import annotations

import torch
from torch import fx, nn

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


def _count_below(kept: torch.Tensor | None, i: int) -> int:
    return i if kept is None else int((kept < i).sum())


def _rewrite(node: fx.Node, sz: _Sizes) -> None:
    lab = sz.of(node)
    packet = getattr(node.target, "overloadpacket", None)
    args = list(node.args)
    if packet in (aten.view, aten.reshape, aten._unsafe_view, aten.expand, aten.new_zeros,
                  aten.new_ones, aten.new_empty, aten.new_full) and isinstance(lab, Labels):
        args[1] = sz.shape(lab)
    elif packet is aten.unflatten and isinstance(lab, Labels):
        d = args[1] % len(sz.of(args[0]).shape)
        args[2] = sz.shape(lab)[d : d + len(args[2])]
    elif packet in (aten.slice, aten.select, aten.narrow):
        src = sz.of(args[0])
        d = args[1] % len(src.shape)
        kept = sz.kept(src, d)
        if kept is None:
            return
        size = src.shape[d]
        if packet is aten.select:
            args[2] = _count_below(kept, args[2] % size)
        elif packet is aten.narrow:
            start = args[2] % size
            args[2], args[3] = _count_below(kept, start), int(
                ((kept >= start) & (kept < start + args[3])).sum())
        else:
            start, end, step = slice(*(args[2:5] + [None] * (5 - len(args)))).indices(size)
            if step != 1:
                raise NotImplementedError("strided slice over a pruned dim")
            args[2:4] = [_count_below(kept, start), _count_below(kept, end)]
    elif packet in (aten.split, aten.split_with_sizes, aten.chunk) and isinstance(lab, list):
        d = (node.kwargs.get("dim", args[2] if len(args) > 2 else 0)) % len(lab[0].shape)
        node.target = aten.split_with_sizes.default
        args = [args[0], [sz.shape(x)[d] for x in lab], d]
    elif packet in (aten.conv1d, aten.conv2d, aten.conv3d, aten.convolution) and isinstance(
            lab, Labels):
        gi = 8 if packet is aten.convolution else 6
        if len(args) > gi and args[gi] > 1:  # whole groups removed: groups shrink in ratio
            cd = len(lab.shape) - (node.args[1].meta["val"].dim() - 2) - 1
            args[gi] = max(1, args[gi] * sz.shape(lab)[cd] // lab.shape[cd])
    elif packet is aten.group_norm and isinstance(lab, Labels):
        c_old = lab.shape[1]
        args[1] = args[1] * sz.shape(lab)[1] // c_old
    else:
        return
    node.args = tuple(args)


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
        _rewrite(node, sz)
    gm.graph.lint()
    gm.recompile()
    apply_plan(gm, plan, prefix="model.")
    return gm
