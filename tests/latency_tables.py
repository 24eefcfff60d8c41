"""Deterministic latency tables for tests: a measured table's nodes and grids with times set
by a formula, so that what is tested is the code that reads a table, not this shared machine."""

from __future__ import annotations

import torch

from trainonce.latency.table import LatencyTable, Term


def proportional(table: LatencyTable) -> LatencyTable:
    """``table``'s nodes and grids with deterministic times: 0.1 ms per node at full width,
    proportional to the product of its kept shares, plus a fixed 10%. Timings on this shared
    machine are noise at 1.6 ms a forward (a busy moment measured only 26.7% removable); the
    optimizers' behaviour under a table is what is tested here, not the machine."""
    terms = []
    for t in table.terms:
        grid = torch.tensor(1e-4, dtype=torch.float64)
        for lv in t.levels:
            grid = grid[..., None] * torch.tensor(lv, dtype=torch.float64)
        terms.append(Term(t.node, t.op, t.axes, t.levels, grid.tolist()))
    dense = 1.1e-4 * len(terms)
    return LatencyTable(table.meta, dense, table.classes, terms)
