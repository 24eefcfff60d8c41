"""Fallback slim model: the exported graph itself, with cut weights and updated size arguments.

Used when a model's own forward keeps sizes we cannot update (e.g. `nn.MultiheadAttention`,
reshapes to `self.num_heads`). Every size argument is recomputed from the channel labels by the
op's `resize` entry in the op table (`graph/table.py`).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import fx, nn

from ..graph import registry
from ..graph.labels import Labels, spans
from ..graph.propagate import propagate
from ..space.analysis import Analysis
from ..space.search_space import SearchSpace
from ..trace import MODEL_PREFIX, trace
from .interface import SlimProgram, mode_dependent_layers
from .slicing import apply_plan
from .surgery import remove_structures


def dim_atoms(analysis: Analysis, lab: object, d: int) -> torch.Tensor | None:
    """The atom of every position along dim ``d`` of a traced value with labels ``lab``; None
    when that dim never shrinks (no axis spans it, or its removal unit spans other dims)."""
    ax = lab.axis_spanning(d) if isinstance(lab, Labels) else None
    if ax is None:
        return None
    zig = analysis.zigs_of(ax)
    if len(spans(ax)) > 1 and bool((zig == zig.narrow(d, 0, 1)).all()):
        return None  # the removal unit spans other dims: this one never shrinks
    return ax[tuple(slice(None) if k == d else 0 for k in range(ax.dim()))]


class Sizes:
    """Kept positions along each dim of each traced value, given the zero ZIGs: the ``sizes``
    view the op table's resize rules read (also used by `trainonce.latency`)."""

    def __init__(self, analysis: Analysis, zero: torch.Tensor) -> None:
        self.analysis = analysis
        sig = analysis.traced.program.graph_signature
        # parameters, buffers and plain tensor attributes (YOLO's ``stride``: a lifted constant)
        self._placeholders = {target: name for name, target in (
            *sig.inputs_to_parameters.items(), *sig.inputs_to_buffers.items(),
            *sig.inputs_to_lifted_tensor_constants.items())}
        self.zero = zero.bool().cpu()
        self.gone = analysis.removed_atoms(self.zero)

    def kept(self, lab: Labels, d: int) -> torch.Tensor | None:
        atoms = dim_atoms(self.analysis, lab, d)
        return None if atoms is None else torch.nonzero(~self.gone[atoms]).flatten()

    def shape(self, lab: Labels) -> list[int]:
        out = []
        for d, s in enumerate(lab.shape):
            k = self.kept(lab, d)
            out.append(s if k is None else int(k.numel()))
        return out

    def of(self, node: fx.Node):
        if node.op == "get_attr":  # a parameter or buffer, a placeholder of the analysed graph
            node_name = self._placeholders.get(node.target)
            return self.analysis.labels_of(node_name) if node_name else None
        return self.analysis.labels_of(node.name)


def slim_program(space: SearchSpace, zero: torch.Tensor, plan: dict,
                 source: nn.Module | None = None) -> SlimProgram:
    """The slim model as a traced program with cut weights, returning the model's own output
    structure. With ``source`` (the full model, not yet cut) the program is traced again with a
    dynamic batch dimension, so it runs at any batch size; without it, or if that trace fails,
    the analysis trace is used and the batch size stays the example's (``fixed_batch``)."""
    analysis = space.analysis
    if analysis is None:
        raise ValueError("slim_program needs a SearchSpace made by trainonce.analyze")
    gm, reason = None, "no source model to trace again"
    if source is not None:
        if analysis.dynamic is None:  # traced once per analysis: constructions reuse it
            try:
                analysis.dynamic = reanalyze(analysis, source, dynamic_batch=True)
            except Exception as exc:  # noqa: BLE001 - the fixed-batch program is the fallback
                analysis.dynamic = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
        reason = analysis.dynamic if isinstance(analysis.dynamic, str) else reason
        if isinstance(analysis.dynamic, Analysis):
            try:
                gm = _cut_program(analysis.dynamic, zero, plan)
            except Exception as exc:  # noqa: BLE001 - e.g. a size rule that cannot stay symbolic
                reason = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
    fixed = gm is None
    if fixed:
        gm = _cut_program(analysis, zero, plan)
    slim = SlimProgram(gm, analysis.traced.output, mode_dependent_layers(analysis.traced.model))
    slim.fixed_batch = reason if fixed else None
    return slim


def reanalyze(analysis: Analysis, source: nn.Module, example_inputs: Any = None, *,
              dynamic_batch: bool = False) -> Analysis:
    """Labels of ``source`` traced again, on ``example_inputs`` (default: the analysis' own;
    e.g. another batch size) or with a dynamic batch. Parameters get their atoms in the same
    order as in the analysis trace, so the analysis' ZIG of every atom still applies; a trace
    that labels the model differently raises RuntimeError."""
    if example_inputs is None:
        example_inputs = (analysis.traced.args, analysis.traced.kwargs)
    traced = trace(source, example_inputs, dynamic_batch=dynamic_batch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the analysis already reported them
        prop = propagate(traced)
    if prop.rec.next_atom != analysis.prop.rec.next_atom:
        raise RuntimeError("the model traced again is labelled differently")
    return Analysis(traced, prop, analysis.zig_of_atom,
                    structure_of_atom=analysis.structure_of_atom, structures=analysis.structures)


def _cut_program(analysis: Analysis, zero: torch.Tensor, plan: dict) -> fx.GraphModule:
    # a plain GraphModule over the unlifted graph: it supports train()/eval() like any module
    unlifted = analysis.traced.program.module()
    gm = fx.GraphModule(unlifted, unlifted.graph)
    sz = Sizes(analysis, zero)
    remove_structures(gm, analysis.structures, zero)
    for node in list(gm.graph.nodes):
        if node.op != "call_function":
            continue
        if registry.is_metadata_assert(node.target):  # asserts the sizes before the cut
            gm.graph.erase_node(node)
            continue
        entry = registry.lookup(node.target)
        if entry is not None and entry.resize is not None:
            entry.resize(node, sz)
    gm.graph.lint()
    gm.recompile()
    apply_plan(gm, plan, prefix=MODEL_PREFIX)
    return gm
