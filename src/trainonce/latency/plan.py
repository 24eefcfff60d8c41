"""The grid of cuts each node is timed at, and the runnable configurations it needs: one per
distinct (op, shapes, layouts, dtypes, arguments) key, so repeated blocks are timed once."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..trace import tensor_leaves
from .nodes import NodeClass, NodeSpec, level_counts, make_inputs, realised, replay
from .table import Term

# makes fresh inputs and returns the call to time on them
Maker = Callable[[], Callable[[], object]]


@dataclass
class NodePlan:
    """A node's grid: the coordinates of its axes and the configuration key of every point
    (in row-major order of the grid)."""

    spec: NodeSpec
    coords: list[list[float]]
    keys: list[str] = field(default_factory=list)

    def term(self, classes: dict, store: dict[str, float]) -> Term:
        """The node's term, its values read from ``store``; its classes get ids in
        ``classes`` (class key -> id)."""
        values = torch.tensor([store[k] for k in self.keys], dtype=torch.float64)
        ids = [classes.setdefault(c.key(), len(classes)) for c in self.spec.classes]
        if len(self.spec.classes) <= 2:
            values, axes = values.reshape(*(len(c) for c in self.coords)), [[i] for i in ids]
        else:
            axes = [ids]
        node = self.spec.node
        return Term(node.name, str(node.target), axes, self.coords, values.tolist())


def grid(classes: list[NodeClass], levels: int) -> tuple[list[list[float]], list[list[int]]]:
    """Coordinates of the grid and, per point, how many ZIGs each class keeps: a full grid
    over one or two classes; one level for all classes at once (the diagonal) for more."""
    counts = [level_counts(c.zigs.numel(), levels) for c in classes]
    if len(classes) <= 2:
        coords = [[realised(c, k) for k in ks] for c, ks in zip(classes, counts)]
        return coords, [list(p) for p in itertools.product(*counts)]
    diag: dict[float, list[int]] = {}
    for j in range(levels):
        ks = [max(1, round(c.zigs.numel() * j / (levels - 1))) for c in classes]
        diag.setdefault(sum(realised(c, k) for c, k in zip(classes, ks)) / len(ks), ks)
    coords = sorted(diag)
    return [coords], [diag[x] for x in coords]


def plan_node(analysis, spec: NodeSpec, num_zigs: int, levels: int, prefix: str,
              known: Callable[[str], bool], pending: dict[str, Maker], dev: torch.device,
              dtype: torch.dtype, gen: torch.Generator) -> NodePlan | None:
    """The node's plan, adding to ``pending`` the configurations not ``known`` yet; None when
    its time does not depend on the widths (a view) or it cannot run alone (warned)."""
    coords, points = grid(spec.classes, levels)
    keys: dict[int, str] = {}
    new: dict[str, Maker] = {}
    for j in [len(points) - 1, *range(len(points) - 1)]:  # full width first: is it a view?
        zero = torch.zeros(num_zigs, dtype=torch.bool)
        for c, k in zip(spec.classes, points[j]):
            zero[c.zigs[k:]] = True
        try:
            rep = replay(analysis, spec, zero, dev, dtype)
            keys[j] = key = prefix + rep.key
            if known(key) or key in pending or key in new:
                continue
            inputs = make_inputs(spec, rep, dev, dtype, gen)
            out = rep.module(*inputs)
            if j == len(points) - 1 and _is_view(spec, out, inputs):
                return None  # a view or reshape: no work at any width
            shapes = [tuple(t.shape) for t in tensor_leaves(out)]
            if rep.out_shape is not None and shapes[:1] != [rep.out_shape]:
                raise RuntimeError(f"gives {shapes[:1]}, not the slim {rep.out_shape}")
        except Exception as exc:  # noqa: BLE001 - one node's failure must not stop the table
            warnings.warn(f"trainonce latency: {spec.node.target} ('{spec.node.name}') cannot "
                          f"run alone at a cut ({type(exc).__name__}: {exc}); its time is "
                          "taken as independent of the widths", stacklevel=3)
            return None
        new[key] = _maker(spec, rep, dev, dtype, gen)
    pending.update(new)
    return NodePlan(spec, coords, [keys[j] for j in range(len(points))])


def _maker(spec, rep, dev, dtype, gen) -> Maker:
    def make():
        inputs = make_inputs(spec, rep, dev, dtype, gen)
        return lambda: rep.module(*inputs)

    return make


def _is_view(spec: NodeSpec, out: Any, inputs: list[torch.Tensor]) -> bool:
    """The output shares memory with an input, and the op does not write (``relu_`` does)."""
    name = getattr(spec.node.target, "name", lambda: "")().split("::")[-1]
    if name.endswith("_") and not name.endswith("__"):
        return False
    held = {x.untyped_storage().data_ptr() for x in inputs}
    leaves = tensor_leaves(out)
    return bool(leaves) and all(t.untyped_storage().data_ptr() in held for t in leaves)
