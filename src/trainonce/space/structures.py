"""Erasing mode's removal units: the regions of the traced graph whose whole output only enters a
sum or a concat, found with post-dominators (OTOv3's segments, as single-exit regions).

A unit is the set of nodes whose every path to the outputs runs through one input ``v`` of a
joint (a sum or a concat: the op registry's `Joint`s). It is removable when it holds trainable
parameters, starts at a fan-out point (an input-derived value that also reaches the outputs
another way), and zeroing its parameters makes ``v`` exactly zero (the op table's zero rules).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import fx

from ..graph import registry
from ..graph.labels import Labels, spans
from ..graph.propagate import Propagation
from ..graph.zeros import Zero
from ..trace import Traced


@dataclass
class Structure:
    """One removal unit. ``exit``: the traced value the region computes; ``joints``: the add or
    cat nodes that take it; ``nodes``: the region's top-level graph nodes (parameters
    included); ``channels``: for a concat, the atoms of ``exit`` along the concat dim (they
    leave the consumer with it); ``removable`` False with ``reason`` when it cannot go."""

    name: str
    kind: str  # "sum" or "concat"
    exit: str
    joints: list[str]
    nodes: frozenset[str]
    params: list[str]
    buffers: list[str]
    channels: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    removable: bool = True
    reason: str | None = None


class FlowGraph:
    """The top-level traced graph as integer adjacency, in topological (graph) order."""

    def __init__(self, graph: fx.Graph) -> None:
        # shape asserts read values without using them: not a path
        self.nodes = [n for n in graph.nodes
                      if not (n.op == "call_function" and registry.is_ignored(n.target))]
        self.index = {n: i for i, n in enumerate(self.nodes)}
        self.by_name = {n.name: i for i, n in enumerate(self.nodes)}
        self.placeholders_of: dict[str, set[int]] = {}  # canonical parameter -> its nodes
        self.users = [[self.index[u] for u in n.users if u in self.index] for n in self.nodes]
        self.args = [[self.index[a] for a in n.all_input_nodes if a in self.index]
                     for n in self.nodes]
        self.exit = len(self.nodes)  # a virtual node after the output
        self.output = next(i for i, n in enumerate(self.nodes) if n.op == "output")
        self.ipdom = self._post_dominators()
        self.children: list[list[int]] = [[] for _ in range(self.exit + 1)]
        for i, p in enumerate(self.ipdom):
            self.children[p].append(i)

    def _post_dominators(self) -> list[int]:
        """Immediate post-dominator of every node (Cooper-Harvey-Kennedy on a DAG: users come
        later in graph order, so one reverse sweep settles every node)."""
        ipdom = [self.exit] * len(self.nodes)

        def meet(a: int, b: int) -> int:
            while a != b:
                while a < b:
                    a = ipdom[a]
                while b < a:
                    b = ipdom[b]
            return a

        for i in range(len(self.nodes) - 1, -1, -1):
            users = self.users[i]
            if not users:
                continue
            p = users[0]
            for u in users[1:]:
                p = meet(p, u)
            ipdom[i] = p
        return ipdom

    def region(self, v: int) -> set[int]:
        """Every node post-dominated by ``v`` (``v`` included)."""
        out, stack = set(), [v]
        while stack:
            i = stack.pop()
            out.add(i)
            stack.extend(self.children[i])
        return out

    def reaches(self, start: int, goals: set[int], avoid: set[int]) -> bool:
        """Whether a path leads from ``start`` to one of ``goals`` outside ``avoid``."""
        last = max(goals)
        seen, stack = {start}, [start]
        while stack:
            i = stack.pop()
            for u in self.users[i]:
                if u in goals:
                    return True
                if u in seen or u in avoid or u > last:
                    continue
                seen.add(u)
                stack.append(u)
        return False


def find_structures(g: FlowGraph, traced: Traced, prop: Propagation,
                    blocked_root: torch.Tensor, roots: torch.Tensor) -> list[Structure]:
    """Every candidate removal unit of ``traced`` (its graph ``g``; removable or not, with the
    reason), in graph order. ``blocked_root``: bool per atom root, pinned channels."""
    from_input = _input_derived(g, traced)
    param_of = {n.name: traced.params[n.name] for n in g.nodes if n.name in traced.params}
    for name, canonical in param_of.items():
        g.placeholders_of.setdefault(canonical, set()).add(g.by_name[name])
    buffer_of = {n.name: traced.buffers[n.name] for n in g.nodes if n.name in traced.buffers}
    found: dict[int, Structure] = {}
    for node in g.nodes:
        if not _is_joint(node):
            continue
        for v in dict.fromkeys(_joint_inputs(node)):
            vi = g.index[v]
            if vi in found or _is_joint(v):
                continue
            s = _candidate(g, vi, from_input, param_of, buffer_of, prop, blocked_root, roots)
            if s is not None:
                found[vi] = s
    return _drop_outer(list(found.values()))


def _joint(n: fx.Node) -> registry.Joint | None:
    """The erasing joint (sum or concat) node ``n`` is, or None (also for a call of a joint op
    that joins nothing, such as ``a - b``)."""
    found = registry.joint(n.target) if n.op == "call_function" else None
    return found if found is not None and found.inputs(n.args) else None


def _is_joint(n: fx.Node) -> bool:
    return _joint(n) is not None


def _input_derived(g: FlowGraph, traced: Traced) -> list[bool]:
    flags = [False] * len(g.nodes)
    for i, n in enumerate(g.nodes):
        flags[i] = n.name in traced.user_inputs or any(flags[a] for a in g.args[i])
    return flags


def _candidate(g: FlowGraph, vi: int, from_input: list[bool], param_of: dict, buffer_of: dict,
               prop: Propagation, blocked_root: torch.Tensor, roots: torch.Tensor
               ) -> Structure | None:
    v = g.nodes[vi]
    region = g.region(vi)
    params = list(dict.fromkeys(param_of[g.nodes[i].name] for i in sorted(region)
                                if g.nodes[i].name in param_of))
    if not params:
        return None  # no weights: nothing to train to zero
    joints = [u for u in g.users[vi]]
    if not all(_is_joint(g.nodes[u]) for u in joints):
        return None  # its output is also used as such: not a branch
    # a fan-out point: an input-derived value that feeds the region and also reaches the
    # outputs another way (an embedding lookup or a chain has none)
    entries = {a for i in region for a in g.args[i] if a not in region and from_input[a]}
    if not any(g.reaches(e, {g.output}, region) for e in entries):
        return None
    kind = _joint(g.nodes[joints[0]]).kind
    # a parameter lifted under several placeholders (shared) must have them all inside
    inside = {param_of[g.nodes[i].name] for i in region if g.nodes[i].name in param_of}
    outside = {p for p in inside if g.placeholders_of[p] - region}
    s = Structure(_name(params), kind, v.name, [g.nodes[u].name for u in joints],
                  frozenset(g.nodes[i].name for i in region), params,
                  sorted({buffer_of[g.nodes[i].name] for i in region
                          if g.nodes[i].name in buffer_of}))
    reason = _why_not(g, vi, region, s, outside, prop, blocked_root, roots)
    if reason is not None:
        s.removable, s.reason = False, reason
    return s


def _why_not(g: FlowGraph, vi: int, region: set[int], s: Structure, outside: set[str],
             prop: Propagation, blocked_root: torch.Tensor, roots: torch.Tensor) -> str | None:
    shared = sorted(set(s.params) & outside)
    if shared:
        return f"its parameter '{shared[0]}' is also used outside it"
    if len({_joint(g.nodes[u]).kind for u in g.users[vi]}) > 1:
        return "its output enters both a sum and a concat"
    if _zero_state(g, vi, region) is not Zero.YES:
        return "its output is not exactly zero when its parameters are (e.g. it ends in " \
               "sigmoid/exp or adds a constant)"
    if s.kind == "sum":
        return _sum_problem(g, vi)
    return _concat_channels(g, vi, s, prop, blocked_root, roots)


def _zero_state(g: FlowGraph, vi: int, region: set[int]) -> Zero:
    """The exit's state with every parameter of the region zero (nodes outside: unknown)."""
    state: dict[fx.Node, Zero] = {}
    for i in sorted(region):
        n = g.nodes[i]
        if n.op == "placeholder":
            state[n] = Zero.YES  # a parameter or buffer used only here; buffers are not
            continue             # zeroed, but no zero rule reads a buffer as a factor
        entry = registry.lookup(n.target) if n.op == "call_function" else None
        if entry is None or entry.zero is None:
            state[n] = Zero.NO
            continue
        args = fx.node.map_arg(n.args, lambda a: state.get(a, Zero.NO))
        kwargs = fx.node.map_arg(n.kwargs, lambda a: state.get(a, Zero.NO))
        state[n] = entry.zero(list(args), dict(kwargs))
    return state.get(g.nodes[vi], Zero.NO)


def _sum_problem(g: FlowGraph, vi: int) -> str | None:
    v = g.nodes[vi]
    for u in g.users[vi]:
        add = g.nodes[u]
        joined = _joint(add).inputs(add.args)  # a literal 0 is no input: ``0 + v`` is v
        others = [a for a in joined if a is not v]
        if len(joined) - len(others) != 1 or not all(isinstance(a, fx.Node) for a in others):
            return "it is added to itself or to a number"
        if not others:
            continue  # ``v + 0`` or ``v - 0``: the call is v, and goes with it
        if add.kwargs.get("alpha", 1) != 1:
            return "its sum is scaled (add with alpha)"
        if _shape(others[0]) != _shape(add):
            return "the other input of its sum is broadcast to a larger shape"
    return None


def _shape(n: fx.Node) -> tuple | None:
    val = n.meta.get("val")
    return tuple(val.shape) if isinstance(val, torch.Tensor) else None


def _concat_channels(g: FlowGraph, vi: int, s: Structure, prop: Propagation,
                     blocked_root: torch.Tensor, roots: torch.Tensor) -> str | None:
    v = g.nodes[vi]
    lab = prop.labels.get(v.name)
    shape = _shape(v)
    if not isinstance(lab, Labels) or shape is None:
        return "its output carries no channel labels"
    dims = set()
    for u in g.users[vi]:
        cat = g.nodes[u]
        d = cat.args[1] if len(cat.args) > 1 else cat.kwargs.get("dim", 0)
        dims.add(d % len(shape))
    if len(dims) != 1:
        return "it enters concats along different dims"
    (d,) = dims
    ax = lab.axis_spanning(d) if shape[d] > 1 else None
    if ax is None or len(spans(ax)) != 1:
        return f"its positions along the concat dim {d} cannot be removed one by one"
    atoms = ax.reshape(-1)
    if bool((atoms == 0).any()) or bool(blocked_root[roots[atoms]].any()):
        return "its channels are pinned (they reach a model output or an op kept whole)"
    s.channels = atoms
    return None


def _name(params: list[str]) -> str:
    """The modules holding ``params``: their common prefix, then the children under it."""
    mods = [p.rsplit(".", 1)[0] if "." in p else "" for p in params]
    parts = [m.split(".") for m in mods]
    common: list[str] = []
    for level in zip(*parts):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    prefix = ".".join(common)
    below = list(dict.fromkeys(".".join(p[len(common):][:1]) for p in parts))
    below = [b for b in below if b]
    if not below:
        return prefix or "(model)"
    inner = below[0] if len(below) == 1 else "{" + ",".join(below) + "}"
    return f"{prefix}.{inner}" if prefix else inner


def _drop_outer(structures: list[Structure]) -> list[Structure]:
    """Regions nest or are disjoint; of nested units only the innermost stay (a unit inside
    another is erased on its own; the outer one is then erased unit by unit)."""
    out = []
    for s in structures:
        inner = [t for t in structures if t is not s and t.nodes < s.nodes]
        if not inner:
            out.append(s)
    return out


class Hierarchy:
    """Which sets of structures may go together. A removed structure's output is zero; a sum or
    concat whose inputs are all removed is zero too; such a zero value may only feed sums and
    concats (which then lose that input) or other removed structures, never a live op or an
    output (it would make them constant: OTOv3's validity, no path from the inputs). Results
    are cached per set of removed structures, so selections that only add channel ZIGs cost
    one dictionary lookup."""

    def __init__(self, g: FlowGraph, units: list[tuple[Structure, int]]) -> None:
        self.users = g.users
        self.names = [n.name for n in g.nodes]
        # a sum with a number in it (``a + 3``) is a live op: a zero input cannot be dropped
        self.joints = {i: [g.index[a] for a in _joint_inputs(n)] for i, n in enumerate(g.nodes)
                       if _is_joint(n) and all(isinstance(a, fx.Node)
                                               for a in _joint(n).inputs(n.args))}
        self.units = {z: (s.name, g.by_name[s.exit],
                          {g.by_name[n] for n in s.nodes if n in g.by_name})
                      for s, z in units}
        # what dropping a zero joint (all its inputs removed) from the joint it feeds would
        # get wrong; a unit's own exit was checked when it was found (`_why_not`)
        self.drop_problems = {(i, u): why for u in self.joints for i in self.joints[u]
                              if i in self.joints
                              and (why := _drop_problem(g.nodes[i], g.nodes[u])) is not None}
        self.zigs = torch.tensor(sorted(self.units), dtype=torch.long)
        self._memo: dict[tuple[int, ...], str | None] = {}

    def removed_units(self, zero: torch.Tensor) -> tuple[int, ...]:
        if self.zigs.numel() == 0:
            return ()
        return tuple(self.zigs[zero.bool().cpu()[self.zigs]].tolist())

    def valid(self, zero: torch.Tensor) -> bool:
        return self.why_invalid(zero) is None

    def why_invalid(self, zero: torch.Tensor) -> str | None:
        key = self.removed_units(zero)
        if not key:
            return None
        if key not in self._memo:
            self._memo[key] = self._check(key)
        return self._memo[key]

    def _check(self, key: tuple[int, ...]) -> str | None:
        removed = {i for z in key for i in self.units[z][2]}
        zero = {self.units[z][1] for z in key}
        for j in sorted(self.joints):  # graph order: a joint's inputs are settled before it
            ins = self.joints[j]
            if ins and all(i in zero for i in ins):
                zero.add(j)
                continue
            bad = next((i for i in ins if i in zero and (i, j) in self.drop_problems), None)
            if bad is not None:
                culprits = [self.units[z][0] for z in key if self._feeds(z, bad, zero)]
                return (f"removing {', '.join(culprits)} leaves no input to {self.names[bad]}, "
                        f"and {self.names[j]} cannot drop it: {self.drop_problems[bad, j]}")
        for i in sorted(zero):
            bad = [u for u in self.users[i] if u not in removed and i not in self.joints.get(u, ())]
            if bad:
                culprits = [self.units[z][0] for z in key
                            if self.units[z][1] == i or self._feeds(z, i, zero)]
                return (f"removing {', '.join(culprits or [self.units[z][0] for z in key])} "
                        f"leaves no input to {self.names[i]}, which feeds "
                        f"{self.names[bad[0]]} (no path from the model inputs)")
        return None

    def _feeds(self, z: int, joint: int, zero: set[int]) -> bool:
        """Whether unit ``z``'s output reaches ``joint`` through zero joints only."""
        stack, seen = [self.units[z][1]], set()
        while stack:
            i = stack.pop()
            if i == joint:
                return True
            for u in self.users[i]:
                if u in zero and u not in seen:
                    seen.add(u)
                    stack.append(u)
        return False


def _drop_problem(inner: fx.Node, outer: fx.Node) -> str | None:
    """Why ``outer`` (a joint) would not compute the same once its input ``inner`` (a joint
    whose inputs are all removed, so zero) is dropped from it; None if it would."""
    kind = _joint(outer).kind
    if kind == "sum":
        others = [a for a in _joint_inputs(outer) if a is not inner]
        if outer.kwargs.get("alpha", 1) != 1:
            return "it is scaled (add with alpha)"
        if others and _shape(others[0]) != _shape(outer):
            return "its other input is broadcast to a larger shape"
        return None
    if _joint(inner).kind == "sum":
        return ("it is concatenated, and the layers after the concat would still read its "
                "channels")
    dim = lambda n: (n.args[1] if len(n.args) > 1 else n.kwargs.get("dim", 0)) % len(_shape(n))  # noqa: E731
    return None if dim(inner) == dim(outer) else "it is concatenated along another dim"


def _joint_inputs(n: fx.Node) -> list[fx.Node]:
    return [a for a in _joint(n).inputs(n.args) if isinstance(a, fx.Node)]

