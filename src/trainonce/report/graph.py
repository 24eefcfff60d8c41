"""Dependency-graph drawing: the ``torch.export`` op graph as a hand-written SVG / HTML page.

Ops holding parameters are coloured by the group of their output channels (prunable groups in
colour, unprunable ones grey and dashed); layers follow the longest path from the input.
"""

from __future__ import annotations

import html
from pathlib import Path

import torch

from ..atomic import atomic_write

_PALETTE = [
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#86bc86",
    "#d37295",
    "#a0cbe8",
    "#ffbe7d",
    "#8cd17d",
]
W, H, DX, DY = 168, 26, 184, 46


def _describe(n, params: dict[str, str]) -> dict:
    """One node of the drawing: its op name, innermost module and the parameters it reads."""
    if n.op == "placeholder":
        op, mod = "input", n.name
    elif n.op == "output":
        op, mod = "output", ""
    else:
        op = str(getattr(n.target, "__name__", n.target)).split(".")[0]
        stack = n.meta.get("nn_module_stack") or {}
        mod = list(stack.values())[-1][0] if stack else ""
    ins = n.all_input_nodes
    return {
        "id": n.name,
        "op": op,
        "module": mod,
        "params": [params[a.name] for a in ins if a.name in params],
    }


def op_graph(model: torch.nn.Module, example_inputs: tuple) -> tuple[list[dict], list[tuple]]:
    """Nodes ``{id, op, module, params}`` and edges ``(src, dst)`` of the exported graph."""
    ep = torch.export.export(model, example_inputs, strict=False)
    sig = ep.graph_signature
    params = dict(sig.inputs_to_parameters)
    hidden = set(params) | set(sig.inputs_to_buffers) | set(sig.inputs_to_lifted_tensor_constants)
    alias: dict[str, str] = {}  # getitem nodes are drawn as their tuple-producing source
    nodes: list[dict] = []
    edges: list[tuple] = []
    for n in ep.graph.nodes:
        if n.op == "placeholder" and n.name in hidden:
            continue
        if n.op == "call_function" and "getitem" in str(n.target):
            src = n.args[0]
            alias[n.name] = alias.get(src.name, src.name)
            continue
        nodes.append(_describe(n, params))
        edges += [
            (alias.get(a.name, a.name), n.name) for a in n.all_input_nodes if a.name not in hidden
        ]
    return nodes, edges


def _layout(nodes: list[dict], edges: list[tuple]) -> dict[str, tuple[float, float]]:
    ids = [n["id"] for n in nodes]
    preds: dict[str, list[str]] = {i: [] for i in ids}
    for s, d in edges:
        if s in preds and d in preds:
            preds[d].append(s)
    depth: dict[str, int] = {}
    for i in ids:  # nodes are in topological order
        depth[i] = 1 + max((depth[p] for p in preds[i]), default=-1)
    layers: dict[int, list[str]] = {}
    for i in ids:
        layers.setdefault(depth[i], []).append(i)
    pos: dict[str, tuple[float, float]] = {}
    for d in sorted(layers):
        row = layers[d]
        key = {i: sum(pos[p][0] for p in preds[i]) / len(preds[i]) if preds[i] else 0 for i in row}
        row.sort(key=lambda i: key[i])
        for k, i in enumerate(row):
            pos[i] = ((k - (len(row) - 1) / 2) * DX, d * DY)
    return pos


def _colour_groups(space, nodes: list[dict]) -> dict[int, str]:
    """Set ``node["group"]`` (the group of its output channels, or None); return group colours:
    one palette colour per prunable group, grey for unprunable ones."""
    zig_group = torch.full((space.num_zigs,), -1, dtype=torch.long)
    for gi, g in enumerate(space.groups):
        zig_group[g.offset : g.offset + g.size] = gi
    colours: dict[int, str] = {}
    for n in nodes:
        n["group"] = None
        for p in n["params"]:
            ps = space.param_slices.get(p)
            vec = ps.dims.get(0) if ps is not None else None
            if vec is not None and bool((vec >= 0).any()):
                n["group"] = int(zig_group[vec[vec >= 0][0]])
                break
        g = n["group"]
        if g is not None and g not in colours:
            prunable = space.groups[g].prunable
            colours[g] = _PALETTE[len(colours) % len(_PALETTE)] if prunable else "#bbbbbb"
    return colours


def _legend(x0: float, n_nodes: int, n_edges: int) -> list[str]:
    out, lx = [], x0 + 10
    for label, fill, dash in (
        ("prunable group (one colour per group)", _PALETTE[0], ""),
        ("unprunable group", "#bbbbbb", ' stroke-dasharray="3,2"'),
        ("no parameters", "white", ""),
    ):
        out.append(
            f'<rect x="{lx:.0f}" y="12" width="14" height="12" fill="{fill}" '
            f'stroke="#333"{dash}/><text x="{lx + 18:.0f}" y="22">{html.escape(label)}</text>'
        )
        lx += 24 + 6.2 * len(label)
    out.append(
        f'<text x="{x0 + 10:.0f}" y="44">{n_nodes} ops, {n_edges} edges; hover a '
        "node for its module, parameters and group</text>"
    )
    return out


def _edge_path(a: tuple[float, float], b: tuple[float, float], top: float) -> str:
    (x1, y1), (x2, y2) = a, b
    if y2 - y1 > 1.5 * DY:  # skips rows (a residual): go round the right of the column
        xa, xb, c1, c2 = x1 + W / 2, x2 + W / 2, y1 + top + H / 2, y2 + top + H / 2
        d = f"M{xa:.0f},{c1:.0f} C{xa + 40:.0f},{c1:.0f} {xb + 40:.0f},{c2:.0f} {xb:.0f},{c2:.0f}"
    else:
        y1, y2, ym = y1 + top + H, y2 + top, (y1 + y2) / 2 + top + H / 2
        d = f"M{x1:.0f},{y1:.0f} C{x1:.0f},{ym:.0f} {x2:.0f},{ym:.0f} {x2:.0f},{y2:.0f}"
    return f'<path d="{d}" fill="none" stroke="#999" stroke-width="1"/>'


def _node_box(space, n: dict, xy: tuple[float, float], top: float, colours: dict) -> str:
    """A rounded box with the op and module, its tooltip listing parameters and group."""
    e = html.escape
    (x, y), g = xy, n["group"]
    fill = colours.get(g, "white") if g is not None else "white"
    dash = ' stroke-dasharray="3,2"' if g is not None and not space.groups[g].prunable else ""
    tip = [f"{n['op']} {n['module']}".strip()] + [f"param {p}" for p in n["params"]]
    if g is not None:
        grp = space.groups[g]
        why = "prunable" if grp.prunable else f"unprunable: {grp.reason}"
        tip.append(f"group {grp.name} ({grp.size} channels, {why})")
    label = f"{n['op']} {n['module']}".strip()
    label = label if len(label) <= 30 else label[:14] + "…" + label[-15:]
    return (
        f'<g><title>{e(chr(10).join(tip))}</title><rect x="{x - W / 2:.0f}" '
        f'y="{y + top:.0f}" width="{W}" height="{H}" rx="5" fill="{fill}" '
        f'stroke="#333"{dash}/><text x="{x:.0f}" y="{y + top + 16:.0f}" '
        f'text-anchor="middle">{e(label)}</text></g>'
    )


def render_svg(space, nodes: list[dict], edges: list[tuple]) -> str:
    """Standalone SVG: nodes coloured by group, edges as curves, a legend on top."""
    colours = _colour_groups(space, nodes)
    pos = _layout(nodes, edges)
    xs = [x for x, _ in pos.values()] or [0.0]
    x0, top = min(xs) - W / 2 - 10, 70
    width = max(max(xs) - min(xs) + W + 60, 620)  # room for skip edges on the right
    height = top + max((y for _, y in pos.values()), default=0) + H + 20
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="{x0:.0f} 0 {width:.0f} {height:.0f}" font-family="sans-serif" font-size="10">',
        f'<rect x="{x0:.0f}" y="0" width="{width:.0f}" height="{height:.0f}" fill="white"/>',
        *_legend(x0, len(nodes), len(edges)),
        *(_edge_path(pos[s], pos[d], top) for s, d in edges if s in pos and d in pos),
        *(_node_box(space, n, pos[n["id"]], top, colours) for n in nodes),
        "</svg>",
    ]
    return "\n".join(out)


def write_graph(space, model, example_inputs: tuple, path: Path) -> Path:
    """Write the dependency graph to ``path``: ``.svg`` alone, otherwise an HTML page."""
    nodes, edges = op_graph(model, example_inputs)
    svg = render_svg(space, nodes, edges)
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
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))
