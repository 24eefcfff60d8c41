"""Layout of the dependency graph: rows by longest path from the input, long graphs split into
side-by-side columns at block boundaries, the boundary node repeated at the next column's top.

A boundary (after row r) may start a new column when every edge crossing it leaves one node of
row r, as at the end of a residual block; then all edges stay inside their column.
"""

from __future__ import annotations

from dataclasses import dataclass, field

W, H, DX, DY = 168, 30, 184, 50  # node box, horizontal and vertical pitch
COLUMN_ROWS = 32  # rows per column before a graph is split (about 1600 px)
GUTTER = 90  # room right of a column for edges that skip rows


@dataclass
class Placed:
    """Centre x and top y per node id (``ghosts``: extra id -> the node it repeats), the edges
    with sources moved to ghosts where they cross columns, the column of every id."""

    pos: dict[str, tuple[float, float]] = field(default_factory=dict)
    ghosts: dict[str, str] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    column: dict[str, int] = field(default_factory=dict)
    width: float = 0.0
    height: float = 0.0


def _depths(ids: list[str], edges: list[tuple]) -> tuple[dict, dict]:
    preds: dict[str, list[str]] = {i: [] for i in ids}
    for s, d in edges:
        if s in preds and d in preds:
            preds[d].append(s)
    depth: dict[str, int] = {}
    for i in ids:  # nodes come in topological order
        depth[i] = 1 + max((depth[p] for p in preds[i]), default=-1)
    return preds, depth


def _allowed_cuts(depth: dict, edges: list[tuple], n_rows: int) -> list[bool]:
    """allowed[r]: the boundary after row r is crossed only by edges leaving one node of row r."""
    long_cross = [0] * (n_rows + 1)  # difference array: edges passing over boundaries a+1..b-1
    leaving: list[set[str]] = [set() for _ in range(n_rows)]
    for s, d in edges:
        a, b = depth[s], depth[d]
        leaving[a].add(s)
        if b - a > 1:
            long_cross[a + 1] += 1
            long_cross[b] -= 1
    allowed, running = [], 0
    for r in range(n_rows):
        running += long_cross[r]
        allowed.append(running == 0 and len(leaving[r]) <= 1)
    return allowed


def _columns(allowed: list[bool], n_rows: int, per_column: int) -> list[int]:
    """First row of every column: greedily the last allowed cut that keeps a column within
    ``per_column`` rows (or the first allowed one after, if none does)."""
    if n_rows <= per_column * 5 // 4:
        return [0]
    starts, s = [0], 0
    while n_rows - s > per_column:
        end = min(s + per_column, n_rows - 1)
        fits = [r for r in range(s + per_column // 3, end) if allowed[r]]
        later = [r for r in range(end, n_rows - 1) if allowed[r]]
        if not fits and not later:
            break
        cut = fits[-1] if fits else later[0]
        s = cut + 1
        starts.append(s)
    return starts


def layout(ids: list[str], edges: list[tuple], per_column: int = COLUMN_ROWS) -> Placed:
    """Place nodes (ids in topological order) and rewrite edges crossing columns."""
    preds, depth = _depths(ids, edges)
    edges = [(s, d) for s, d in edges if s in depth and d in depth]
    n_rows = 1 + max(depth.values(), default=0)
    starts = _columns(_allowed_cuts(depth, edges, n_rows), n_rows, per_column)
    col_of_row = [0] * n_rows
    for c, s in enumerate(starts):
        for r in range(s, n_rows):
            col_of_row[r] = c
    out = Placed()
    rows: dict[tuple[int, int], list[str]] = {}  # (column, local row) -> ids
    has_succ = {s for s, _ in edges}
    for c, s in enumerate(starts[1:], start=1):  # the node ending column c-1, repeated on top
        src = next((i for i in ids if depth[i] == s - 1 and i in has_succ), None)
        if src is not None:
            ghost = f"{src}@{c}"
            out.ghosts[ghost] = src
            rows[(c, 0)] = [ghost]
            out.column[ghost] = c
    shift = {c for c, _ in rows}  # columns that start with a ghost
    for i in ids:
        c = col_of_row[depth[i]]
        local = depth[i] - starts[c] + (1 if c in shift else 0)
        rows.setdefault((c, local), []).append(i)
        out.column[i] = c
    for s, d in edges:
        cs, cd = out.column[s], out.column[d]
        ghost = f"{s}@{cd}"
        out.edges.append((ghost, d) if cs != cd and ghost in out.ghosts else (s, d))
    local_x: dict[str, float] = {}
    for key in sorted(rows):
        row = rows[key]
        bary = {i: sum(local_x.get(p, 0.0) for p in preds.get(i, [])) / len(preds[i])
                if preds.get(i) else 0.0 for i in row}
        row.sort(key=lambda i: bary[i])
        for k, i in enumerate(row):
            local_x[i] = (k - (len(row) - 1) / 2) * DX
    x0 = 0.0
    for c in range(len(starts)):
        members = [i for i in out.column if out.column[i] == c]
        lo = min(local_x[i] for i in members) - W / 2
        hi = max(local_x[i] for i in members) + W / 2
        for (cc, local), row in rows.items():
            if cc == c:
                for i in row:
                    out.pos[i] = (x0 - lo + local_x[i], local * DY)
        x0 += hi - lo + GUTTER
    out.width = x0
    out.height = max((y for _, y in out.pos.values()), default=0.0) + H
    return out
