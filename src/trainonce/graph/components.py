"""Connected components of the atom coupling graph, vectorised (hook-and-compress)."""

from __future__ import annotations

import torch


# 7B graph, bench_analysis.py --components, idle: ours 0.09 s = scipy csgraph 0.09 s; kept ours
def components(n: int, a: torch.Tensor, b: torch.Tensor,
               parent: torch.Tensor | None = None) -> torch.Tensor:
    """Root (smallest member id) of every atom ``0..n-1`` given undirected edges ``a[i]-b[i]``.

    ``parent``: the result of an earlier call, to add edges to those components incrementally
    (only the new edges are passed; the result is the same as from all edges at once)."""
    parent = torch.arange(n, dtype=torch.long) if parent is None else parent.clone()
    if a.numel() == 0:
        return parent
    while True:
        pa, pb = parent[a], parent[b]
        if bool((pa == pb).all()):
            return parent
        low = torch.minimum(pa, pb)
        parent.scatter_reduce_(0, pa, low, reduce="amin")
        parent.scatter_reduce_(0, pb, low, reduce="amin")
        while True:  # pointer jumping until every atom points at a root
            nxt = parent[parent]
            if torch.equal(nxt, parent):
                break
            parent = nxt
