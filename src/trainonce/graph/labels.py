"""Channel labels carried by every tensor of the traced graph, and the record of their coupling.

An *axis* is an int64 tensor of atom ids with the value's rank, of size 1 along every dim it does
not span (broadcast). Atom 0 means "this position can never be removed". Parameters and buffers
get fresh atoms along each dim; op rules couple atoms (`union`), merge a dim's positions into one
removal unit (`coarsen`) or pin them (`block`). Connected atoms form one zero-invariant group.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

Axis = torch.Tensor


def spans(axis: Axis) -> frozenset[int]:
    return frozenset(d for d, s in enumerate(axis.shape) if s > 1)


def compress(axis: Axis) -> Axis:
    """Shrink to size 1 every dim along which the atom ids do not change."""
    for d in range(axis.dim()):
        if axis.shape[d] > 1 and bool((axis == axis.narrow(d, 0, 1)).all()):
            axis = axis.narrow(d, 0, 1)
    return axis


@dataclass
class Labels:
    """Labels of one tensor: its shape, its axes (each dim spanned by at most one axis), the
    parameter it is a pure view of (if any), why it is unlabelled where it is, and whether it
    is computed from buffers and constants alone (no parameter, no input)."""

    shape: tuple[int, ...]
    axes: list[Axis] = field(default_factory=list)
    param_view: str | None = None
    why: str = "a computed tensor"
    constant: bool = False

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def axis_spanning(self, dim: int) -> Axis | None:
        for a in self.axes:
            if a.shape[dim] > 1:
                return a
        return None

    def with_axes(self, axes: list[Axis], shape=None, param_view=None) -> Labels:
        shape = tuple(self.shape if shape is None else shape)
        kept = [compress(a) for a in axes]
        kept = [a for a in kept if a.numel() > 1 or bool((a != 0).any())]
        return Labels(shape, kept, param_view, self.why, self.constant)


@dataclass(frozen=True)
class Site:
    """Where a rule is being applied: the op and the module path of the traced node. Formats as
    ``"<op> in '<module>'"`` so rules can write ``f"normalised over by {rec.where}"``."""

    op: str = ""
    module: str = ""

    def __str__(self) -> str:
        if not self.module:
            return f"{self.op} in the top-level forward" if self.op else ""
        return f"{self.op} in '{self.module}'" if self.op else self.module

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


class Reason(str):
    """Why atoms are pinned: the full text, plus ``generic``, the same text with its own site
    reduced to the op name (for summaries that count reasons across modules)."""

    generic: str

    def __new__(cls, text: str, site: Site | None = None) -> Reason:
        obj = super().__new__(cls, text)
        full = str(site) if site is not None else ""
        obj.generic = text.replace(full, site.op) if full and site.op else text
        return obj


def unlabelled(shape, why: str) -> Labels:
    return Labels(tuple(shape), [], None, why)


class Recorder:
    """Collects atoms, couplings and pins while rules run; resolved into groups afterwards."""

    def __init__(self) -> None:
        self.next_atom = 1
        self._a: list[torch.Tensor] = []
        self._b: list[torch.Tensor] = []
        self._blocked: list[tuple[torch.Tensor, int]] = []
        self.reasons: list[Reason] = []
        self._reason_ids: dict[str, int] = {}
        self.where = Site()  # the op and module of the rule being applied
        self.costs: list[tuple[str, float, list[torch.Tensor], str]] = []
        # what each cost term belongs to: a top-level graph node ("node:<name>") or a
        # parameter ("param:<name>"), so erasing mode can charge terms to whole structures
        self.owner = ""
        self.cost_owners: list[str] = []

    def fresh(self, n: int) -> torch.Tensor:
        ids = torch.arange(self.next_atom, self.next_atom + n, dtype=torch.long)
        self.next_atom += n
        return ids

    def _reason(self, text: str) -> int:
        rid = self._reason_ids.get(text)
        if rid is None:
            rid = self._reason_ids[text] = len(self.reasons)
            self.reasons.append(Reason(text, self.where))
        return rid

    def block(self, atoms: torch.Tensor, reason: str) -> None:
        atoms = atoms.reshape(-1)
        atoms = atoms[atoms > 0]
        if atoms.numel():
            self._blocked.append((atoms, self._reason(reason)))

    def union(self, a: torch.Tensor, b: torch.Tensor, reason: str) -> None:
        """Couple atoms position by position; a position paired with atom 0 gets pinned."""
        a, b = torch.broadcast_tensors(a, b)
        a, b = a.reshape(-1), b.reshape(-1)
        differ = a != b
        if not bool(differ.any()):
            return
        a, b = a[differ], b[differ]
        a_zero, b_zero = a == 0, b == 0
        if bool(a_zero.any()) or bool(b_zero.any()):
            self.block(a[b_zero], reason)
            self.block(b[a_zero], reason)
            both = ~(a_zero | b_zero)
            a, b = a[both], b[both]
        self._a.append(a)
        self._b.append(b)

    def coarsen(self, axis: Axis, dim: int, reason: str) -> Axis:
        """Make all positions along ``dim`` one removal unit; returns the axis without ``dim``."""
        first = axis.narrow(dim, 0, 1)
        self.union(axis, first, reason)
        return first

    def cost(self, kind: str, unit: float, vectors: list[torch.Tensor]) -> None:
        """A FLOPs/params term: ``unit`` times the kept length of each atom vector."""
        self.costs.append((kind, float(unit), [v.reshape(-1) for v in vectors], str(self.where)))
        self.cost_owners.append(self.owner)

    def edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._a:
            empty = torch.zeros(0, dtype=torch.long)
            return empty, empty
        return torch.cat(self._a), torch.cat(self._b)

    def blocked(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._blocked:
            empty = torch.zeros(0, dtype=torch.long)
            return empty, empty
        atoms = torch.cat([a for a, _ in self._blocked])
        rids = torch.cat([torch.full_like(a, r) for a, r in self._blocked])
        return atoms, rids
