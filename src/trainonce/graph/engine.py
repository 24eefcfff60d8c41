"""The coupling engine: one einsum-style rule that most ops reduce to.

Every operand names its dims with letters. A letter kept in the output couples the operands'
atoms position by position; a letter summed over is removable only when one operand is a
parameter (its slice is then in the group and zeroed); a letter in ``fixed`` must never lose a
position (normalised or mixed over). Conflicts coarsen multi-dim axes or pin single-dim ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from .labels import Axis, Labels, Recorder, spans


@dataclass
class Operand:
    labels: Labels
    letters: str  # one letter per dim of labels.shape


@dataclass
class _Item:
    t: Axis  # in letter space
    op: int


def _to_letter_space(ax: Axis, letters: str, pos: dict[str, int], n: int) -> Axis:
    order = sorted(range(len(letters)), key=lambda d: pos[letters[d]])
    shape = [1] * n
    for d in order:
        shape[pos[letters[d]]] = ax.shape[d]
    return ax.permute(order).reshape(shape)


@dataclass
class _Space:
    """The letter space of one coupling: every letter a dim, with its size (the largest size
    any operand gives it) and its position in the joint tensor layout."""

    letters: list[str]
    pos: dict[str, int]
    sizes: dict[str, int]

    @classmethod
    def of(cls, operands: list[Operand], out_letters: str) -> _Space:
        letters = sorted({ch for op in operands for ch in op.letters} | set(out_letters))
        sizes = dict.fromkeys(letters, 1)
        for op in operands:
            if len(set(op.letters)) != len(op.letters):
                raise ValueError(f"repeated letter in {op.letters!r}")
            if len(op.letters) != op.labels.ndim:
                raise ValueError(f"letters {op.letters!r} for a tensor of rank {op.labels.ndim}")
            for ch, s in zip(op.letters, op.labels.shape):
                sizes[ch] = max(sizes[ch], s)
        return cls(letters, {ch: i for i, ch in enumerate(letters)}, sizes)

    @property
    def n(self) -> int:
        return len(self.letters)


def couple(
    rec: Recorder,
    operands: list[Operand],
    out_letters: str,
    *,
    fixed: str = "",
    fixed_reason: str = "",
    flops: bool = False,
) -> list[Axis]:
    """Couple the operands' atoms as the einsum ``operands -> out_letters`` implies and return
    the output's axes. With ``flops`` a MAC cost term (product of all letter sizes) is recorded."""
    sp = _Space.of(operands, out_letters)
    items = [
        _Item(_to_letter_space(ax, op.letters, sp.pos, sp.n), i)
        for i, op in enumerate(operands)
        for ax in op.labels.axes
    ]
    items = _settle(rec, sp, operands, items, out_letters, fixed, fixed_reason)
    merged = _merge(rec, items)
    if flops:
        _record_flops(rec, sp, merged)
    out_pos = [sp.pos[ch] for ch in out_letters]
    rest = [d for d in range(sp.n) if d not in out_pos]
    return [ax.permute(out_pos + rest).reshape([ax.shape[d] for d in out_pos])
            for key, ax in merged.items() if key <= set(out_pos)]  # others: contracted away


def _conflict(rec: Recorder, sp: _Space, operands: list[Operand], spanning: list[_Item],
              ch: str, out_letters: str, fixed: str, fixed_reason: str) -> str | None:
    """Why letter ``ch``'s positions cannot be cut as they are: a reason to pin them, "" to
    cut only the dims all layouts share, or None when they may be coupled as they are."""
    parts = [i for i, op in enumerate(operands)
             if ch in op.letters and op.labels.shape[op.letters.index(ch)] == sp.sizes[ch] > 1]
    owners = {it.op for it in spanning}
    bare = [i for i in parts if i not in owners]
    spansets = {spans(it.t) for it in spanning}
    if ch in fixed:
        return fixed_reason or None
    if bare:
        return f"meets {operands[bare[0]].labels.why} at {rec.where}"
    if len(spansets) > 1 and any(operands[it.op].labels.constant for it in spanning):
        return f"laid out differently by a constant operand of {rec.where}"
    if len(spansets) > 1:
        return ""
    if ch not in out_letters:
        weighted = any(operands[i].labels.param_view for i in owners)
        if not weighted or any(len(spans(it.t)) > 1 for it in spanning):
            return f"summed over without a weight by {rec.where}"
    return None


def _settle(rec: Recorder, sp: _Space, operands: list[Operand], items: list[_Item],
            out_letters: str, fixed: str, fixed_reason: str) -> list[_Item]:
    """Resolve every letter's conflicts (pin, or coarsen multi-dim axes) until none is left."""
    changed = True
    while changed:
        changed = False
        for ch in sp.letters:
            k = sp.pos[ch]
            spanning = [it for it in items if it.t.shape[k] > 1]
            if not spanning:
                continue
            reason = _conflict(rec, sp, operands, spanning, ch, out_letters, fixed, fixed_reason)
            if reason is None:
                continue
            changed = True
            if reason == "":
                # e.g. (head) meets (head, head_dim): cut only what all share, i.e. whole heads
                common = frozenset.intersection(*{spans(it.t) for it in spanning})
                for it in spanning:
                    for d in sorted(spans(it.t) - common):
                        it.t = rec.coarsen(it.t, d, f"laid out as whole units by {rec.where}")
                continue
            for it in spanning:
                if spans(it.t) == {k}:
                    rec.block(it.t, reason)
                    items = [x for x in items if x is not it]
                else:
                    it.t = rec.coarsen(it.t, k, reason)
    return items


def _merge(rec: Recorder, items: list[_Item]) -> dict[frozenset, Axis]:
    """Axes spanning the same dims are coupled position by position into one."""
    merged: dict[frozenset, Axis] = {}
    for it in items:
        key = spans(it.t)
        if not key:
            continue
        if key in merged:
            base = merged[key]
            shape = [max(a, b) for a, b in zip(base.shape, it.t.shape)]
            base = base.expand(shape)
            rec.union(base, it.t.expand(shape), f"coupled at {rec.where}")
            merged[key] = base
        else:
            merged[key] = it.t
    return merged


def _record_flops(rec: Recorder, sp: _Space, merged: dict[frozenset, Axis]) -> None:
    """MACs = product of all letter sizes; prunable letters count their kept positions."""
    unit, vectors = 1.0, []
    for ch in sp.letters:
        ax = next((a for key, a in merged.items() if sp.pos[ch] in key), None)
        if ax is None:
            unit *= sp.sizes[ch]
        else:
            sl = tuple(slice(None) if d == sp.pos[ch] else 0 for d in range(sp.n))
            vectors.append(ax[sl])
    rec.cost("flops", unit, vectors)


def broadcast_letters(shape_len: int, out_len: int) -> str:
    """Letters of an operand aligned right against an output of rank ``out_len``."""
    pool = "abcdefghijklmnopqrstuvwxyz"
    return pool[out_len - shape_len : out_len]


def couple_broadcast(rec: Recorder, inputs: list[Labels], out_shape) -> list[Axis]:
    """The axes of a broadcasting element-wise op's output: inputs aligned right, every output
    dim couples the inputs that span it."""
    n = len(out_shape)
    ops = [Operand(x, broadcast_letters(x.ndim, n)) for x in inputs if x.ndim <= n]
    return couple(rec, ops, broadcast_letters(n, n))

