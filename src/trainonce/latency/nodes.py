"""Which traced nodes change with the cut, the widths they see, and runnable copies of them.

A node's *classes* are its ZIGs grouped by the tensor dims they appear in (a conv: the ZIGs of
its input channels, those of its output channels); each class's kept share is one coordinate.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx

from ..graph import registry
from ..graph.labels import Labels
from ..space.analysis import Analysis
from ..subnet.program import Sizes, dim_atoms


@dataclass
class NodeClass:
    """ZIGs of one node that appear in the same dims; ``weights``: the positions each owns
    (in the first such dim), so the coordinate is the kept share of those positions."""

    zigs: torch.Tensor  # long [n]
    weights: torch.Tensor  # float64 [n]

    def key(self) -> tuple:
        return tuple(self.zigs.tolist()), tuple(self.weights.tolist())


@dataclass
class NodeSpec:
    """A traced node whose input or output widths depend on the kept ZIGs."""

    node: fx.Node
    inputs: list[fx.Node]  # every traced value among its arguments, in order
    classes: list[NodeClass] = field(default_factory=list)


def _labels(analysis: Analysis, node: fx.Node) -> list[Labels]:
    lab = analysis.labels_of(node.name)
    items = lab if isinstance(lab, list) else [lab]
    return [x for x in items if isinstance(x, Labels)]


def node_spec(analysis: Analysis, node: fx.Node) -> NodeSpec | None:
    """The node's classes of at least 2 ZIGs (fewer cannot shrink: every class keeps one), or
    None when no width of the node can change, or it cannot be replayed on its own."""
    if node.op != "call_function" or node.target is operator.getitem:
        return None
    if registry.is_ignored(node.target):
        return None
    inputs: list[fx.Node] = []
    fx.node.map_arg((node.args, node.kwargs), lambda n: inputs.append(n) or n)
    inputs = list(dict.fromkeys(inputs))
    if not all(isinstance(n.meta.get("val"), torch.Tensor) for n in inputs):
        return None  # a tuple-valued or symbolic input: nothing to make a tensor of
    dims = []
    for value in [*inputs, node]:
        for lab in _labels(analysis, value):
            for d in range(len(lab.shape)):
                atoms = dim_atoms(analysis, lab, d)
                if atoms is not None:
                    zigs = analysis.zig_of_atom[atoms]
                    if bool((zigs >= 0).any()):
                        dims.append(zigs)
    if not dims:
        return None
    spec = NodeSpec(node, inputs)
    present = torch.unique(torch.cat(dims))
    present = present[present >= 0]
    # member[d, j]: ZIG present[j] has positions in dim d; equal columns form one class
    member = torch.stack([torch.isin(present, d) for d in dims])
    _, cls = torch.unique(member, dim=1, return_inverse=True)
    for c in range(int(cls.max()) + 1):
        zigs = present[cls == c]
        if zigs.numel() < 2:
            continue
        first = dims[int(member[:, cls == c][:, 0].nonzero()[0])]
        counts = torch.bincount(first[first >= 0], minlength=int(zigs.max()) + 1)
        spec.classes.append(NodeClass(zigs, counts[zigs].double()))
    return spec if spec.classes else None


def level_counts(n: int, levels: int) -> list[int]:
    """How many ZIGs of a class of ``n`` to keep at each grid level: evenly spaced from one
    ZIG to all of them (duplicates dropped)."""
    return sorted({max(1, round(n * i / (levels - 1))) for i in range(levels)})


def realised(cls: NodeClass, k: int) -> float:
    """The coordinate (kept share of positions) when the class keeps its first ``k`` ZIGs."""
    return float(cls.weights[:k].sum() / cls.weights.sum())


class _View:
    """The ``sizes`` view of `Sizes` for a copied node: labels by the original node names."""

    def __init__(self, sizes: Sizes, names: dict[fx.Node, str]) -> None:
        self.sizes, self.names = sizes, names

    def of(self, node: fx.Node):
        return self.sizes.analysis.labels_of(self.names.get(node, node.name))

    def shape(self, lab: Labels) -> list[int]:
        return self.sizes.shape(lab)

    def kept(self, lab: Labels, d: int) -> torch.Tensor | None:
        return self.sizes.kept(lab, d)


@dataclass
class Replay:
    """A one-node program of a traced node at one cut, with inputs to run it on."""

    module: fx.GraphModule
    shapes: list[tuple[int, ...]]  # of every input
    out_shape: tuple[int, ...] | None  # expected (None: several outputs)
    key: str  # the op, its input shapes, layouts and dtypes, and its other arguments


def replay(analysis: Analysis, spec: NodeSpec, zero: torch.Tensor,
           device: torch.device, dtype: torch.dtype) -> Replay:
    """Copy ``spec.node`` into a graph of its own and rewrite its size arguments for the cut
    ``zero`` with the op's resize rule, as the slim program does."""
    sizes = Sizes(analysis, zero)
    graph = fx.Graph()
    env, names, shapes = {}, {}, []
    for i, inp in enumerate(spec.inputs):
        env[inp] = graph.placeholder(f"in{i}")
        env[inp].meta = dict(inp.meta)  # resize rules read traced metadata (a conv's rank)
        names[env[inp]] = inp.name
        labs = _labels(analysis, inp)
        shapes.append(tuple(sizes.shape(labs[0]) if labs else inp.meta["val"].shape))
    new = graph.node_copy(spec.node, lambda n: env[n])
    names[new] = spec.node.name
    graph.output(new)
    entry = registry.lookup(new.target)
    if entry is not None and entry.resize is not None:
        entry.resize(new, _View(sizes, names))
    new.args, new.kwargs = _on(new.args, device), _on(new.kwargs, device)
    labs = analysis.labels_of(spec.node.name)
    out = tuple(sizes.shape(labs)) if isinstance(labs, Labels) else None
    layout = [_layout(inp.meta["val"]) for inp in spec.inputs]
    types = [str(_run_dtype(inp.meta["val"].dtype, dtype)) for inp in spec.inputs]
    args = fx.node.map_arg((new.args, new.kwargs), lambda n: f"%{n.name}")
    key = f"{new.target}|{shapes}|{layout}|{types}|{args!r}"
    return Replay(fx.GraphModule(torch.nn.Module(), graph), shapes, out, key)


def _on(args: Any, device: torch.device) -> Any:
    """Device arguments (a creation op's ``device=``) pointed at the measured device."""
    return fx.node.map_aggregate(
        args, lambda a: device if isinstance(a, torch.device) else a)


def _run_dtype(traced: torch.dtype, dtype: torch.dtype) -> torch.dtype:
    """Floating values run in the measured dtype (as after ``model.to(dtype)``)."""
    return dtype if traced.is_floating_point else traced


def _layout(val: torch.Tensor) -> tuple[list[int], list[int]]:
    """The dims from outermost to innermost in memory (a transposed or channels-last input is
    slower to read than a contiguous one), and the broadcast (stride 0) dims."""
    strides, shape = val.stride(), val.shape
    bcast = [d for d in range(val.dim()) if int(strides[d]) == 0 and int(shape[d]) > 1]
    order = sorted((d for d in range(val.dim()) if d not in bcast),
                   key=lambda d: (-int(strides[d]), d))
    return order, bcast


def make_inputs(spec: NodeSpec, rep: Replay, device: torch.device,
                dtype: torch.dtype, gen: torch.Generator) -> list[torch.Tensor]:
    """Inputs of the slim shapes, laid out in memory as the traced ones: floats in
    [0.5, 1.5) (no NaN from a log or sqrt, no denormals), integers and bools zero (valid
    indices)."""
    out = []
    for inp, shape in zip(spec.inputs, rep.shapes):
        val = inp.meta["val"]
        order, broadcast = _layout(val)
        full = list(shape)
        for d in broadcast:
            full[d] = 1
        run = _run_dtype(val.dtype, dtype)
        perm_shape = [full[d] for d in order + broadcast]
        if run.is_floating_point:
            x = torch.rand(perm_shape, generator=gen, dtype=torch.float32).add_(0.5).to(run)
        else:
            x = torch.zeros(perm_shape, dtype=run)
        x = x.to(device).permute(*_inverse(order + broadcast)).expand(*shape)
        out.append(x)
    return out


def _inverse(perm: list[int]) -> list[int]:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return inv
