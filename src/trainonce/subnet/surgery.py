"""Erasing in the slim traced program: the sum or concat that received a removed structure
loses that input (a sum with one input left becomes that input), and what only fed it is gone."""

from __future__ import annotations

import torch
from torch import fx

from ..graph import registry

aten = torch.ops.aten


def remove_structures(gm: fx.GraphModule, structures: list, zero: torch.Tensor) -> list[str]:
    """Cut every structure of ``structures`` (pairs of `Structure` and ZIG id) flagged in
    ``zero`` out of ``gm``'s graph, then drop the nodes, parameters and buffers nothing uses
    any more. Returns the names of the removed structures."""
    zero = zero.bool().cpu()
    removed = [s for s, zig in structures if bool(zero[zig])]
    if not removed:
        return []
    nodes = {n.name: n for n in gm.graph.nodes}
    dead: set[fx.Node] = set()
    for s in removed:
        if s.exit not in nodes:
            raise RuntimeError(f"the traced program has no node {s.exit!r} (structure {s.name})")
        dead.add(nodes[s.exit])
    gone = set()
    for node in list(gm.graph.nodes):  # graph order: a joint's inputs are settled before it
        joint = registry.joint(node.target) if node.op == "call_function" else None
        if joint is None or not any(a in dead for a in joint.inputs(node.args)):
            continue
        live = [a for a in joint.inputs(node.args) if a not in dead]
        if not live:
            dead.add(node)
        elif joint.kind == "sum":
            survivor = live[0]
            if joint.inplace:  # later in-place ops wrote into a fresh tensor: keep it so
                with gm.graph.inserting_before(node):
                    survivor = gm.graph.call_function(aten.clone.default, (survivor,))
            node.replace_all_uses_with(survivor)
            gone.add(node)
        else:
            node.args = (live, *node.args[1:])
    before = _attributes_read(gm)
    _erase(gm.graph, gone | dead)
    _drop_attributes(gm, before - _attributes_read(gm))
    gm.graph.lint()
    gm.recompile()
    return [s.name for s in removed]


def _erase(graph: fx.Graph, seeds: set[fx.Node]) -> None:
    """Erase ``seeds`` and everything that then feeds nothing: a node all of whose users go,
    or an in-place op (no users of its own) on a value that goes. In-place ops are why
    `fx.Graph.eliminate_dead_code` is not enough: it keeps them as side effects."""
    erase = set(seeds)
    changed = True
    while changed:
        changed = False
        for node in reversed(graph.nodes):
            if node in erase or node.op not in ("call_function", "get_attr"):
                continue
            users = list(node.users)
            if (users and all(u in erase for u in users)) or (
                    not users and any(a in erase for a in node.all_input_nodes)):
                erase.add(node)
                changed = True
    for node in reversed(graph.nodes):
        if node in erase:
            if any(u not in erase for u in node.users):
                raise RuntimeError(f"removed value {node.name} is still used by "
                                   f"{next(u for u in node.users if u not in erase).name}: "
                                   "the set of removed structures is not valid")
            graph.erase_node(node)


def _attributes_read(gm: fx.GraphModule) -> set[str]:
    return {n.target for n in gm.graph.nodes if n.op == "get_attr" and n.users}


def _drop_attributes(gm: fx.GraphModule, names: set[str]) -> None:
    """Delete the parameters and buffers only the removed structures read (a tensor the
    model never read stays, as in the full model)."""
    for name in sorted(names):
        owner, _, attr = name.rpartition(".")
        module = gm.get_submodule(owner) if owner else gm
        if hasattr(module, attr):  # a tensor shared under two names goes once
            delattr(module, attr)
    for node in list(gm.graph.nodes):
        if node.op == "get_attr" and node.target in names and not node.users:
            gm.graph.erase_node(node)
