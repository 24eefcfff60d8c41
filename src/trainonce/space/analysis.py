"""What `analyze` keeps beyond the groups, for sub-network construction: the trace, the channel
labels of every traced value and the ZIG of every atom. Imported by space and subnet alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..graph.propagate import Propagation
from ..trace import Traced


@dataclass
class Analysis:
    """The trace of a model and, for every atom of its channel labels, the ZIG it belongs to."""

    traced: Traced
    prop: Propagation
    zig_of_atom: torch.Tensor  # global ZIG id of every atom, -1 if none or kept whole
    # the same model traced with a dynamic batch (for slim programs), or why that failed;
    # filled on first use by `subnet.program`
    dynamic: Analysis | str | None = field(default=None, repr=False)
    # erasing mode: the structure ZIG of every atom a removable concat branch carries (-1:
    # none), the removable structures with their ZIG ids, and the validity check
    structure_of_atom: torch.Tensor | None = field(default=None, repr=False)
    structures: list = field(default_factory=list, repr=False)
    hierarchy: Any = field(default=None, repr=False)

    def removed_atoms(self, zero: torch.Tensor) -> torch.Tensor:
        """Bool per atom: its channel ZIG or its structure ZIG is in ``zero``."""
        from .slots import per_position

        zero = zero.bool().cpu()
        gone = per_position(zero, self.zig_of_atom, False)
        if self.structure_of_atom is not None:
            gone = gone | per_position(zero, self.structure_of_atom, False)
        return gone

    def labels_of(self, node_name: str) -> object | None:
        """Channel labels of the traced value ``node_name`` (a `Labels`, a list of them for
        multi-output ops, or None when nothing was recorded for it)."""
        return self.prop.labels.get(node_name)

    def zigs_of(self, axis: torch.Tensor) -> torch.Tensor:
        """Global ZIG id of every atom of ``axis`` (same shape; -1: in no prunable ZIG)."""
        return self.zig_of_atom[axis]
