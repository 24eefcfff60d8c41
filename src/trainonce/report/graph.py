"""Dependency-graph drawing: the analysis' traced op graph as a hand-written SVG / HTML page.

Ops holding parameters are coloured by the group of their output channels (a distinct colour per
prunable group, unprunable ones grey and dashed) and show their channel count; shape-only ops
(the op registry's, e.g. permute, view) are left out; long graphs are split into columns.
"""

from __future__ import annotations

import colorsys
import html
import inspect
import operator
from dataclasses import dataclass
from pathlib import Path

import torch

from ..atomic import atomic_write
from ..graph import registry
from ..graph.propagate import module_path
from ..trace import Traced, trace
from .graph_layout import DY, GUTTER, H, Placed, W, layout

_PALETTE = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#86bc86", "#d37295", "#a0cbe8", "#ffbe7d", "#8cd17d",
]
UNPRUNABLE = "#bbbbbb"


def colours(n: int) -> list[str]:
    """``n`` distinct fill colours: the Tableau palette, then golden-angle hues."""
    out = list(_PALETTE[:n])
    k = 0
    while len(out) < n:
        hue = (0.11 + 0.618034 * k) % 1.0
        light = (0.62, 0.74, 0.52)[k % 3]
        rgb = colorsys.hls_to_rgb(hue, light, 0.55)
        c = "#" + "".join(f"{round(255 * v):02x}" for v in rgb)
        if c not in out and c != UNPRUNABLE:
            out.append(c)
        k += 1
    return out


def _input_names(model: torch.nn.Module) -> dict[str, str]:
    """The trace wraps the model, so its positional inputs are named ``args_0``, ``args_1``...:
    the names of the model's own ``forward`` arguments."""
    try:
        sig = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return {}
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = [p.name for p in sig.parameters.values() if p.kind in kinds]
    return {f"args_{i}": name for i, name in enumerate(names)}


def _describe(n, params: dict[str, str], shapes: dict[str, torch.Size],
              inputs: dict[str, str]) -> dict:
    """One node of the drawing: its op, innermost module, the parameters it reads and the
    channels of its first parameter's output dim."""
    if n.op == "placeholder":
        op, mod = "input", inputs.get(n.name, n.name)
    elif n.op == "output":
        op, mod = "output", ""
    else:
        op = str(getattr(n.target, "__name__", n.target)).split(".")[0]
        mod = module_path(n)
    ps = [params[a.name] for a in n.all_input_nodes if a.name in params]
    first = shapes.get(ps[0]) if ps else None
    return {
        "id": n.name,
        "op": op,
        "module": mod,
        "params": ps,
        "channels": int(first[0]) if first is not None and len(first) else None,
    }


@dataclass
class OpGraph:
    """Nodes ``{id, op, module, params, channels}`` in topological order, edges ``(src, dst)``,
    and how many shape-only ops were left out."""

    nodes: list[dict]
    edges: list[tuple[str, str]]
    hidden: int = 0


def op_graph(traced: Traced, hide_shape_ops: bool = True) -> OpGraph:
    """The traced graph; ``getitem`` and (with ``hide_shape_ops``) shape-only nodes with one
    input are drawn as that input."""
    sig = traced.program.graph_signature
    params = traced.params  # placeholder -> the parameter's name in the user's model
    shapes = {n: p.shape for n, p in traced.model.named_parameters(remove_duplicate=False)}
    inputs = _input_names(traced.model)
    hidden = set(params) | set(sig.inputs_to_buffers) | set(sig.inputs_to_lifted_tensor_constants)
    alias: dict[str, str] = {}  # node drawn as another one
    nodes: list[dict] = []
    edges: list[tuple] = []
    n_shape = 0
    for n in traced.graph.nodes:
        if n.op == "placeholder" and n.name in hidden:
            continue
        ins = [a for a in n.all_input_nodes if a.name not in hidden]
        if n.op == "call_function" and n.target is operator.getitem:
            alias[n.name] = alias.get(n.args[0].name, n.args[0].name)
            continue
        node = _describe(n, params, shapes, inputs)
        shape_only = n.op == "call_function" and registry.is_shape_op(n.target)
        if hide_shape_ops and shape_only and not node["params"] and len(ins) == 1:
            alias[n.name] = alias.get(ins[0].name, ins[0].name)
            n_shape += 1
            continue
        nodes.append(node)
        edges += list(dict.fromkeys((alias.get(a.name, a.name), n.name) for a in ins))
    return OpGraph(nodes, edges, n_shape)


def _output_groups(space) -> dict[str, int]:
    """Parameter -> index of the group (prunable or not) owning position 0 of its dim 0."""
    owner: dict[str, int] = {}
    for gi, g in enumerate(space.groups):
        for m in g.members:
            if m.dim == 0 and bool((m.index == 0).any()):
                owner.setdefault(m.param, gi)
    return owner


def _colour_groups(space, nodes: list[dict]) -> dict[int, str]:
    """Set ``node["group"]`` (the group of its output channels, or None); return group colours:
    a distinct colour per prunable group (in order of appearance), grey for unprunable ones."""
    owner = _output_groups(space)
    seen: list[int] = []
    for n in nodes:
        n["group"] = next((owner[p] for p in n["params"] if p in owner), None)
        if n["group"] is not None and n["group"] not in seen:
            seen.append(n["group"])
    prunable = [g for g in seen if space.groups[g].prunable]
    out = dict(zip(prunable, colours(len(prunable))))
    out.update({g: UNPRUNABLE for g in seen if not space.groups[g].prunable})
    return out


def _legend(n_nodes: int, n_edges: int, n_hidden: int, n_columns: int) -> list[str]:
    out, lx = [], 10
    for label, fill, dash in (
        ("prunable group (one colour per group)", _PALETTE[0], ""),
        ("unprunable group", UNPRUNABLE, ' stroke-dasharray="3,2"'),
        ("no parameters", "white", ""),
        ("continued from the previous column", "white", ' stroke-dasharray="1,2"'),
    ):
        out.append(
            f'<rect x="{lx}" y="12" width="14" height="12" fill="{fill}" stroke="#333"{dash}/>'
            f'<text x="{lx + 18}" y="22">{html.escape(label)}</text>'
        )
        lx += 24 + int(6.2 * len(label))
    cols = f", {n_columns} columns (read left to right)" if n_columns > 1 else ""
    out.append(
        f'<text x="10" y="44">{n_nodes} ops, {n_edges} edges{cols}; {n_hidden} shape-only ops '
        "(permute, view, ...) not drawn; a number is the channels of the op's output; hover a "
        "node for its module, parameters and group</text>"
    )
    return out


def _edge_path(a: tuple[float, float], b: tuple[float, float], top: float) -> str:
    (x1, y1), (x2, y2) = a, b
    span = round((y2 - y1) / DY)
    if span > 1:  # skips rows (a residual): round the right, further for longer skips
        bulge = min(GUTTER - 10, 24 + 8 * min(span - 1, 7))
        xa, xb, c1, c2 = x1 + W / 2, x2 + W / 2, y1 + top + H / 2, y2 + top + H / 2
        d = (f"M{xa:.0f},{c1:.0f} C{xa + bulge:.0f},{c1:.0f} {xb + bulge:.0f},{c2:.0f} "
             f"{xb:.0f},{c2:.0f}")
    else:
        y1, y2, ym = y1 + top + H, y2 + top, (y1 + y2) / 2 + top + H / 2
        d = f"M{x1:.0f},{y1:.0f} C{x1:.0f},{ym:.0f} {x2:.0f},{ym:.0f} {x2:.0f},{y2:.0f}"
    return f'<path d="{d}" fill="none" stroke="#999" stroke-width="1"/>'


def _short(text: str, n: int = 28) -> str:
    return text if len(text) <= n else text[: n // 2 - 1] + "…" + text[-(n // 2):]


def _node_box(space, n: dict, xy: tuple[float, float], top: float, colours: dict,
              ghost: bool = False) -> str:
    """A rounded box: module on the first line, op and channels on the second; its tooltip
    lists parameters and group. ``data-*`` attributes say what it shows, for tools and tests."""
    e = html.escape
    (x, y), g = xy, n["group"]
    prunable = g is not None and space.groups[g].prunable
    fill = "white" if ghost or g is None else colours[g]
    dash = ' stroke-dasharray="1,2"' if ghost else (
        ' stroke-dasharray="3,2"' if g is not None and not prunable else "")
    tip = [f"{n['op']} {n['module']}".strip()] + [f"param {p}" for p in n["params"]]
    if g is not None:
        grp = space.groups[g]
        why = "prunable" if prunable else f"unprunable: {grp.reason}"
        tip.append(f"group {grp.name} ({grp.size} channels, {why})")
    ch = f" · {n['channels']}" if n["channels"] is not None else ""
    line1 = ("↳ " if ghost else "") + _short(n["module"] or n["op"])
    line2 = (n["op"] if n["module"] else "") + ch
    kind = "ghost" if ghost else "node"
    attrs = f'class="{kind}" data-op="{e(n["op"])}"'
    if g is not None:
        attrs += f' data-group="{g}" data-prunable="{str(prunable).lower()}"'
    if n["channels"] is not None:
        attrs += f' data-channels="{n["channels"]}"'
    return (
        f'<g {attrs}><title>{e(chr(10).join(tip))}</title><rect x="{x - W / 2:.0f}" '
        f'y="{y + top:.0f}" width="{W}" height="{H}" rx="5" fill="{fill}" stroke="#333"{dash}/>'
        f'<text x="{x:.0f}" y="{y + top + 13:.0f}" text-anchor="middle">{e(line1)}</text>'
        f'<text x="{x:.0f}" y="{y + top + 25:.0f}" text-anchor="middle" fill="#333">'
        f"{e(line2.strip())}</text></g>"
    )


def render_svg(space, graph: OpGraph) -> str:
    """Standalone SVG: nodes coloured by group, edges as curves, a legend on top."""
    nodes, edges = graph.nodes, graph.edges
    colours_ = _colour_groups(space, nodes)
    placed: Placed = layout([n["id"] for n in nodes], edges)
    by_id = {n["id"]: n for n in nodes}
    top = 70
    width = max(placed.width, 900)
    height = top + placed.height + 20
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif" font-size="10">',
        f'<rect x="0" y="0" width="{width:.0f}" height="{height:.0f}" fill="white"/>',
        *_legend(len(nodes), len(edges), graph.hidden, 1 + max(placed.column.values(), default=0)),
        *(_edge_path(placed.pos[s], placed.pos[d], top) for s, d in placed.edges),
        *(_node_box(space, n, placed.pos[n["id"]], top, colours_) for n in nodes),
        *(_node_box(space, by_id[src], placed.pos[gid], top, colours_, ghost=True)
          for gid, src in placed.ghosts.items()),
        "</svg>",
    ]
    return "\n".join(out)


def write_graph(space, model, example_inputs: tuple, path: Path) -> Path:
    """Write the dependency graph to ``path``: ``.svg`` alone, otherwise an HTML page. The graph
    is the one ``space`` was analysed on; a space without one traces ``model`` on
    ``example_inputs``."""
    analysis = getattr(space, "analysis", None)
    traced = analysis.traced if analysis is not None else trace(model, example_inputs)
    svg = render_svg(space, op_graph(traced))
    path = Path(path)
    if path.suffix.lower() == ".svg":
        text = svg
    else:
        title = html.escape(f"trainonce dependency graph: {type(model).__name__}")
        text = (
            f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>'
            "<style>body{font-family:sans-serif;margin:1rem}pre{font-size:12px}</style></head>"
            f"<body><h1>{title}</h1>{svg}<h2>Search space</h2>"
            f"<pre>{html.escape(space.summary(max_rows=200))}</pre></body></html>"
        )
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
