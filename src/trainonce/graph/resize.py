"""Size rewrites for the slim traced program: an op whose arguments hold sizes (a reshape's
shape, a slice's bounds, a conv's groups) gets them recomputed from the kept channels.

Each function takes the fx node and a `sizes` view (``sizes.of(node)`` its labels,
``sizes.shape(labels)`` the slim shape, ``sizes.kept(labels, dim)`` kept positions or None) and
rewrites the node in place. Referenced by the op table's entries.
"""

from __future__ import annotations

import operator

import torch
from torch import fx

from .labels import Labels
from .registry import RuleError

aten = torch.ops.aten


def _count_below(kept: torch.Tensor | None, i: int) -> int:
    return i if kept is None else int((kept < i).sum())


def _set_arg(node: fx.Node, i: int, value) -> None:
    args = list(node.args)
    args[i] = value
    node.args = tuple(args)


def _scaled(node: fx.Node, size: fx.Node, new: int, old: int) -> fx.Node:
    """``size * new // old`` as graph nodes: a symbolic (batch-dependent) size whose dim lost
    positions. Exact, since the kept share of such a dim repeats over the batch."""
    with node.graph.inserting_before(node):
        product = node.graph.call_function(operator.mul, (size, new))
        return node.graph.call_function(operator.floordiv, (product, old))


def _sizes(node: fx.Node, old: list, full: list[int], slim: list[int]) -> list:
    """New size arguments: inferred (-1) and symbolic sizes stay symbolic; the rest are the
    slim sizes."""
    out = []
    for o, f, s in zip(old, full, slim):
        if isinstance(o, fx.Node):
            out.append(o if s == f else _scaled(node, o, s, f))
        else:
            out.append(-1 if o == -1 else s)
    return out


def shape_arg(node: fx.Node, sizes) -> None:
    """view/reshape/expand/new_zeros...: argument 1 is the output shape."""
    lab = sizes.of(node)
    if isinstance(lab, Labels):
        _set_arg(node, 1, _sizes(node, list(node.args[1]), list(lab.shape), sizes.shape(lab)))


def unflatten(node: fx.Node, sizes) -> None:
    lab = sizes.of(node)
    if isinstance(lab, Labels):
        d = node.args[1] % len(sizes.of(node.args[0]).shape)
        n = len(node.args[2])
        _set_arg(node, 2, _sizes(node, list(node.args[2]), list(lab.shape[d : d + n]),
                                 sizes.shape(lab)[d : d + n]))


def _source(node: fx.Node, sizes):
    """The sliced value's labels, the dim, and its kept positions (None: none removed)."""
    src = sizes.of(node.args[0])
    d = node.args[1] % len(src.shape)
    kept = sizes.kept(src, d)
    return src, d, kept if kept is not None and kept.numel() < src.shape[d] else None


def select(node: fx.Node, sizes) -> None:
    src, d, kept = _source(node, sizes)
    if kept is not None:
        _set_arg(node, 2, _count_below(kept, node.args[2] % src.shape[d]))


def narrow(node: fx.Node, sizes) -> None:
    src, d, kept = _source(node, sizes)
    if kept is not None:
        start = node.args[2] % src.shape[d]
        length = int(((kept >= start) & (kept < start + node.args[3])).sum())
        node.args = (*node.args[:2], _count_below(kept, start), length, *node.args[4:])


def slice_(node: fx.Node, sizes) -> None:
    src, d, kept = _source(node, sizes)
    if kept is None:
        return
    args = list(node.args)
    start, end, step = slice(*(args[2:5] + [None] * (5 - len(args)))).indices(src.shape[d])
    if step != 1:
        raise RuleError("a strided slice over a pruned dim")
    args[2:4] = [_count_below(kept, start), _count_below(kept, end)]
    node.args = tuple(args)


def split(node: fx.Node, sizes) -> None:
    """split/chunk by sizes that change with the cut: becomes split_with_sizes."""
    lab = sizes.of(node)
    if isinstance(lab, list):
        args = node.args
        d = node.kwargs.get("dim", args[2] if len(args) > 2 else 0) % len(lab[0].shape)
        node.target = aten.split_with_sizes.default
        node.args = (args[0], [sizes.shape(x)[d] for x in lab], d)
        node.kwargs = {}


def conv_groups(index: int):
    """Convolutions: when whole channel groups are removed, ``groups`` shrinks in ratio."""

    def resize(node: fx.Node, sizes) -> None:
        lab = sizes.of(node)
        groups = node.args[index] if len(node.args) > index else node.kwargs.get("groups", 1)
        if not isinstance(lab, Labels) or groups <= 1:
            return
        cd = len(lab.shape) - (node.args[1].meta["val"].dim() - 2) - 1
        new = max(1, groups * sizes.shape(lab)[cd] // lab.shape[cd])
        if len(node.args) > index:
            _set_arg(node, index, new)
        else:
            node.kwargs = {**node.kwargs, "groups": new}

    return resize


def group_norm(node: fx.Node, sizes) -> None:
    lab = sizes.of(node)
    if isinstance(lab, Labels):
        _set_arg(node, 1, node.args[1] * sizes.shape(lab)[1] // lab.shape[1])
