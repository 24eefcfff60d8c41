"""Walk an exported graph node by node, applying the op table to carry channel labels.

Parameters and buffers get fresh atoms per dim; user inputs and constants are unlabelled; model
outputs are pinned. Unknown ops are pinned with a warning naming the op and the module.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from torch import fx

from ..trace import MODEL_PREFIX, Traced, concrete
from . import registry
from .labels import Labels, Recorder, Site, unlabelled
from .rules import tensor_args

_HOPS = tuple(
    op for op in (
        getattr(torch.ops.higher_order, "wrap_with_set_grad_enabled", None),
        getattr(torch.ops.higher_order, "wrap_with_autocast", None),
    ) if op is not None
)


@dataclass
class Propagation:
    rec: Recorder
    param_atoms: dict[str, dict[int, torch.Tensor]] = field(default_factory=dict)
    buffer_atoms: dict[str, dict[int, torch.Tensor]] = field(default_factory=dict)
    labels: dict[str, object] = field(default_factory=dict)  # node name -> Labels | list
    warnings: list[str] = field(default_factory=list)
    unused_params: list[str] = field(default_factory=list)  # lifted by export, never read


def _shape(val, where: str = "") -> tuple[int, ...] | None:
    if not isinstance(val, torch.Tensor):
        return None
    return tuple(concrete(s, where) for s in val.shape)


_SYMBOLIC = (torch.SymInt, torch.SymFloat, torch.SymBool)


def _out_shapes(node: fx.Node, where: str = ""):
    val = node.meta.get("val")
    if isinstance(val, (list, tuple)):
        return [_shape(v, where) or () for v in val]
    return _shape(val, where)


def module_path(node: fx.Node) -> str:
    """The innermost module of the user's model that emitted ``node`` ("" for the root)."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    path = path.removeprefix("L['self'].").removeprefix(MODEL_PREFIX)
    return "" if path == MODEL_PREFIX.rstrip(".") else path


def _fresh_labels(rec: Recorder, shape: tuple[int, ...]) -> tuple[list, dict[int, torch.Tensor]]:
    axes, atoms = [], {}
    for d, s in enumerate(shape):
        if s > 1:
            ids = rec.fresh(s)
            atoms[d] = ids
            view = [1] * len(shape)
            view[d] = s
            axes.append(ids.reshape(view))
    return axes, atoms


def _excluded(name: str, exclude: set[str]) -> bool:
    parts = name.split(".")
    return any(".".join(parts[:i]) in exclude for i in range(1, len(parts) + 1))


def propagate(traced: Traced, exclude: list[str] | None = None,
              kept_whole: dict[str, str] | None = None) -> Propagation:
    """Labels of every traced value. The parameters of the modules in ``exclude`` (the
    user's) and ``kept_whole`` (name -> why, `graph.families`) are pinned."""
    prop = Propagation(Recorder())
    rec = prop.rec
    excl = set(exclude or [])
    whole = kept_whole or {}
    env: dict[fx.Node, object] = {}
    used: dict[str, bool] = {}
    for node in traced.graph.nodes:
        if node.op != "placeholder":
            break
        shape = _shape(node.meta.get("val")) or ()
        name = traced.params.get(node.name) or traced.buffers.get(node.name)
        if name is None:
            why = (f"the model input '{node.name}'" if node.name in traced.user_inputs
                   else "a constant tensor")
            env[node] = unlabelled(shape, why)
            env[node].constant = node.name not in traced.user_inputs
            continue
        axes, atoms = _fresh_labels(rec, shape)
        is_param = node.name in traced.params
        store = prop.param_atoms if is_param else prop.buffer_atoms
        seen = name in store
        if seen:  # shared tensor seen under another placeholder: same atoms
            atoms = store[name]
            axes = [ids.reshape([s if d == k else 1 for k, s in enumerate(shape)])
                    for d, ids in atoms.items()]
        store[name] = atoms
        env[node] = Labels(shape, axes, name if is_param else None, f"buffer '{name}'",
                           constant=not is_param)
        if is_param and not seen:
            rec.where = Site(module=f"parameter '{name}'")
            rec.owner = f"param:{name}"
            rec.cost("params", 1, list(atoms.values()))
        if _excluded(name, excl):
            for ids in atoms.values():
                rec.block(ids, "excluded by the user")
        owner = next((m for m in whole if _excluded(name, {m})), None)
        if owner is not None:
            for ids in atoms.values():
                rec.block(ids, f"{whole[owner]} ('{owner}')")
        if is_param:
            used[name] = used.get(name, False) or bool(node.users)
    for name, was_used in used.items():
        if not was_used:  # e.g. a training-only auxiliary head: its cut could not be checked
            prop.unused_params.append(name)
            for ids in prop.param_atoms[name].values():
                rec.block(ids, "not used by the traced (eval-mode) forward")
    if prop.unused_params:
        names = prop.unused_params
        prop.warnings.append(
            f"{len(names)} parameters are not used by the traced (eval-mode) forward, e.g. "
            f"{', '.join(repr(n) for n in names[:3])} (training-only heads?): they are kept "
            "whole and left untouched")
    _walk(traced.graph, traced.program.graph_module, env, prop)
    prop.labels = {n.name: v for n, v in env.items()}
    return prop


def _resolve(env, a):
    if isinstance(a, fx.Node):
        return env.get(a)
    if isinstance(a, (list, tuple)):
        return type(a)(_resolve(env, x) for x in a)
    if isinstance(a, dict):
        return {k: _resolve(env, v) for k, v in a.items()}
    return a


def _walk(graph: fx.Graph, gm: torch.nn.Module, env: dict, prop: Propagation,
          top: bool = True):
    rec = prop.rec
    outputs = None
    for node in graph.nodes:
        if node in env:
            continue
        if node.op == "placeholder" or node.op == "get_attr":
            env[node] = unlabelled(_shape(node.meta.get("val")) or (), "a constant tensor")
            env[node].constant = True
            continue
        if node.op == "output":
            outputs = _resolve(env, node.args[0])
            continue
        if node.op != "call_function":
            env[node] = None
            continue
        name = getattr(node.target, "__name__", str(node.target))
        module = module_path(node)
        rec.where = Site(name, module)
        if top:  # a sub-graph's costs belong to the higher-order op that runs it
            rec.owner = f"node:{node.name}"
        if node.target in _HOPS:
            env[node] = _walk_hop(node, gm, env, prop)
            continue
        if isinstance(node.meta.get("val"), _SYMBOLIC):  # size arithmetic of a dynamic batch
            env[node] = concrete(node.meta["val"]) if isinstance(node.meta["val"], torch.SymInt) \
                else None
            continue
        if registry.is_ignored(node.target):
            env[node] = None
            continue
        env[node] = _apply(node, env, prop)
    return outputs


def _apply(node: fx.Node, env: dict, prop: Propagation):
    rec = prop.rec
    args, kwargs = _resolve(env, node.args), _resolve(env, node.kwargs)
    out = _out_shapes(node, str(rec.where))
    entry = registry.lookup(node.target)
    tensors = tensor_args(args, kwargs)
    if entry is None:
        return _pin(prop, tensors, out, f"no channel rule for {rec.where}",
                    f"no channel rule for {rec.where}: the channels it touches are kept whole")
    try:
        res = entry.channels(rec, list(args), dict(kwargs), out)
        _check_fits(res, out)
    except registry.RuleError as exc:  # a call form the rule does not support: pin, never guess
        return _pin(prop, tensors, out, f"unsupported use of {rec.where}",
                    f"the rule for {rec.where} does not support this call ({exc}); kept whole")
    except Exception as exc:
        if registry.strict():
            raise
        # a bug in a rule: keep the model correct (pin) and say so
        return _pin(prop, tensors, out, f"unsupported use of {rec.where}",
                    f"the rule for {rec.where} failed ({type(exc).__name__}: {exc}); kept whole")
    if tensors and all(t.constant for t in tensors):
        for r in res if isinstance(res, list) else [res]:
            if isinstance(r, Labels):
                r.constant = True
    return res


def _pin(prop: Propagation, tensors: list[Labels], out, reason: str, message: str):
    warnings.warn(f"trainonce: {message}", stacklevel=4)
    prop.warnings.append(message)
    return _opaque(prop.rec, tensors, out, reason)


def _check_fits(res, out) -> None:
    """A rule's labels must fit the traced output shapes; anything else is a rule bug."""
    pairs = zip(res, out) if isinstance(out, list) and isinstance(res, list) else [(res, out)]
    for lab, shape in pairs:
        if not isinstance(lab, Labels) or shape is None:
            continue
        for a in lab.axes:
            if a.dim() != len(shape) or any(s not in (1, n) for s, n in zip(a.shape, shape)):
                raise ValueError(f"labels {tuple(a.shape)} do not fit output {tuple(shape)}")


def _opaque(rec: Recorder, tensors: list[Labels], out, reason: str):
    if out is None:
        for x in tensors:
            for a in x.axes:
                rec.block(a, reason)
        return None
    from .compute import opaque

    res = opaque(rec, tensors, out if isinstance(out, list) else [out], reason)
    return res if isinstance(out, list) else res[0]


def _walk_hop(node: fx.Node, gm: torch.nn.Module, env: dict, prop: Propagation):
    """Higher-order ops (grad-mode / autocast regions) run a sub-graph: walk it in place."""
    sub_i = next(i for i, a in enumerate(node.args)
                 if isinstance(a, fx.Node) and a.op == "get_attr")
    sub = getattr(gm, node.args[sub_i].target)
    inputs = [_resolve(env, a) for a in node.args[sub_i + 1:]]
    sub_env: dict = {}
    placeholders = [n for n in sub.graph.nodes if n.op == "placeholder"]
    for ph, val in zip(placeholders, inputs):
        sub_env[ph] = val if isinstance(val, Labels) else unlabelled(
            _shape(ph.meta.get("val")) or (), "a constant tensor")
    outs = _walk(sub.graph, sub, sub_env, prop, top=False)
    return list(outs) if isinstance(outs, (list, tuple)) else outs


def pin_outputs(traced: Traced, prop: Propagation) -> None:
    """Model outputs keep their shape: pin every atom that reaches one."""
    out_node = next(n for n in traced.graph.nodes if n.op == "output")
    rec = prop.rec

    def visit(a):
        if isinstance(a, fx.Node):
            val = prop.labels.get(a.name)
            for x in (val if isinstance(val, list) else [val]):
                if isinstance(x, Labels):
                    for ax in x.axes:
                        rec.block(ax, "reaches a model output")
        elif isinstance(a, (list, tuple)):
            for x in a:
                visit(x)

    visit(out_node.args[0])
