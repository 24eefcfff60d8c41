"""Rules for ops that move data without computing: views, permutes, slices, concatenation.

Labels move exactly as the data does; a position that a rule cannot follow is pinned.
"""

from __future__ import annotations

import torch

from .engine import couple_broadcast
from .labels import Axis, Labels, Recorder, compress, spans


def view_groups(a: tuple[int, ...], b: tuple[int, ...]) -> list[tuple[list[int], list[int]]]:
    """Pair up runs of dims of shapes ``a`` and ``b`` whose sizes multiply to the same number."""
    groups: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        gi, gj, pa, pb = [i], [j], a[i], b[j]
        i, j = i + 1, j + 1
        while pa != pb:
            if pa < pb:
                gi.append(i)
                pa *= a[i]
                i += 1
            else:
                gj.append(j)
                pb *= b[j]
                j += 1
        groups.append((gi, gj))
    if not groups:
        return [(list(range(len(a))), list(range(len(b))))]
    groups[-1][0].extend(range(i, len(a)))
    groups[-1][1].extend(range(j, len(b)))
    return groups


def reshape_axis(ax: Axis, in_shape, out_shape) -> Axis:
    groups = view_groups(tuple(in_shape), tuple(out_shape))
    expand = [1] * len(in_shape)
    target = [1] * len(out_shape)
    for gi, gj in groups:
        if any(ax.shape[d] > 1 for d in gi):
            for d in gi:
                expand[d] = in_shape[d]
            for d in gj:
                target[d] = out_shape[d]
    return ax.expand(expand).reshape(target)


def reshape(rec: Recorder, x: Labels, out_shape) -> Labels:
    axes = [reshape_axis(a, x.shape, out_shape) for a in x.axes]
    return x.with_axes(axes, out_shape, x.param_view)


def permute(x: Labels, dims, out_shape) -> Labels:
    dims = [d % x.ndim for d in dims]
    return x.with_axes([a.permute(dims) for a in x.axes], out_shape, x.param_view)


def transpose(x: Labels, d0: int, d1: int, out_shape) -> Labels:
    dims = list(range(x.ndim))
    d0, d1 = d0 % x.ndim, d1 % x.ndim
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return permute(x, dims, out_shape)


def unsqueeze(x: Labels, d: int, out_shape) -> Labels:
    d = d % (x.ndim + 1)
    return x.with_axes([a.unsqueeze(d) for a in x.axes], out_shape, x.param_view)


def squeeze(x: Labels, dims, out_shape) -> Labels:
    if dims is None:
        dims = [d for d, s in enumerate(x.shape) if s == 1]
    dims = sorted({d % x.ndim for d in dims if x.shape[d % x.ndim] == 1}, reverse=True)
    axes = []
    for a in x.axes:
        for d in dims:
            a = a.squeeze(d)
        axes.append(a)
    return x.with_axes(axes, out_shape, x.param_view)


def expand(x: Labels, out_shape) -> Labels:
    extra = len(out_shape) - x.ndim
    axes = [a.reshape((1,) * extra + tuple(a.shape)) for a in x.axes]
    return x.with_axes(axes, out_shape, x.param_view)


def slice_(rec: Recorder, x: Labels, d: int, start, end, step, out_shape) -> Labels:
    """``x[start:end:step]`` along ``d``. A strided slice cannot follow a cut (the slim model
    would read other positions): the whole dim is pinned. A size-1 slice reads one position
    by its index: that position is pinned."""
    d = d % x.ndim
    start, end, step = slice(start, end, step or 1).indices(x.shape[d])
    axes = []
    for a in x.axes:
        if a.shape[d] > 1 and step != 1:
            reason = f"read by position through a strided slice at {rec.where}"
            axes.extend(pin_dims(rec, Labels(a.shape, [a]), [d], reason))
            continue
        if a.shape[d] > 1:
            a = a[(slice(None),) * d + (slice(start, end),)]
            if a.shape[d] == 1:
                rec.block(a, f"read by position through a size-1 slice at {rec.where}")
                continue
        axes.append(a)
    if step != 1:
        axes = [a[(slice(None),) * d + (slice(start, end, step),)] if a.shape[d] > 1 else a
                for a in axes]
    return x.with_axes(axes, out_shape, x.param_view)


def select(rec: Recorder, x: Labels, d: int, index: int, out_shape) -> Labels:
    d = d % x.ndim
    axes = []
    for a in x.axes:
        if a.shape[d] > 1:
            if spans(a) == {d}:
                rec.block(a, f"indexed by position at {rec.where}")
                continue
            a = rec.coarsen(a, d, f"indexed by position at {rec.where}")
        axes.append(a.squeeze(d))
    return x.with_axes(axes, out_shape, x.param_view)


def pin_dims(rec: Recorder, x: Labels, dims, reason: str) -> list[Axis]:
    """Make ``dims`` unremovable: coarsen multi-dim axes along them, pin single-dim ones."""
    dims = {d % x.ndim for d in dims}
    out = []
    for a in x.axes:
        for d in sorted(dims):
            if a is not None and a.shape[d] > 1:
                if spans(a) <= dims:
                    rec.block(a, reason)
                    a = None
                else:
                    a = rec.coarsen(a, d, reason)
        if a is not None:
            out.append(a)
    return out


def cat(rec: Recorder, xs: list[Labels], d: int, out_shape) -> Labels:
    """Concatenation: dims other than ``d`` are shared (coupled) by all inputs; labels along
    ``d`` are laid end to end, unlabelled inputs contributing pinned positions."""
    d = d % len(out_shape)
    reason = f"concatenated at {rec.where}"
    along, others = [], []
    for x in xs:
        line = None
        rest = []
        for a in x.axes:
            if a.shape[d] > 1 and spans(a) != {d}:
                a = rec.coarsen(a, d, reason)
            if a.shape[d] > 1:
                line = a.reshape(-1)
            else:
                rest.append(a.squeeze(d))
        along.append(line if line is not None else torch.zeros(x.shape[d], dtype=torch.long))
        shape = tuple(s for i, s in enumerate(x.shape) if i != d)
        others.append(Labels(shape, rest, None, x.why))
    reduced_shape = tuple(s for i, s in enumerate(out_shape) if i != d)
    axes = [a.unsqueeze(d) for a in couple_broadcast(rec, others, reduced_shape)]
    line = torch.cat(along)
    if bool((line != 0).any()):
        shape = [1] * len(out_shape)
        shape[d] = line.numel()
        axes.append(line.reshape(shape))
    return Labels(tuple(out_shape), [compress(a) for a in axes])


def split(rec: Recorder, x: Labels, d: int, sizes: list[int], out_shapes) -> list[Labels]:
    """Pieces of ``x`` along ``d``. Equal pieces keep equal widths: position i of every piece
    is one removal unit. A model's own forward almost always computes equal pieces from the
    tensor's size or from one stored width (``chunk(2)``, YOLO's ``split((self.c, self.c))``,
    a fused gate/up projection), and only a cut that keeps them equal can be run by it, so the
    slim model keeps the model's own class instead of becoming a traced program."""
    d = d % x.ndim
    if len(sizes) > 1 and len(set(sizes)) == 1:
        n = sizes[0]
        for a in x.axes:
            if a.shape[d] > 1:
                for i in range(1, len(sizes)):
                    rec.union(a.narrow(d, 0, n), a.narrow(d, i * n, n),
                              f"equal pieces of {rec.where}")
    outs, start = [], 0
    for n, shape in zip(sizes, out_shapes):
        outs.append(slice_(rec, x, d, start, start + n, 1, shape))
        start += n
    return outs


def unbind(rec: Recorder, x: Labels, d: int, out_shapes) -> list[Labels]:
    return [select(rec, x, d, i, s) for i, s in enumerate(out_shapes)]


def flip(x: Labels, dims, out_shape) -> Labels:
    axes = []
    for a in x.axes:
        fd = [dd % x.ndim for dd in dims if a.shape[dd % x.ndim] > 1]
        axes.append(a.flip(fd) if fd else a)
    return x.with_axes(axes, out_shape, x.param_view)


def repeat(x: Labels, reps, out_shape) -> Labels:
    extra = len(reps) - x.ndim
    axes = []
    for a in x.axes:
        a = a.reshape((1,) * extra + tuple(a.shape))
        axes.append(a.repeat([r if a.shape[i] > 1 else 1 for i, r in enumerate(reps)]))
    return x.with_axes(axes, out_shape)


def pixel_shuffle(rec: Recorder, x: Labels, r: int, out_shape) -> Labels:
    c = x.ndim - 3
    axes = pin_dims(rec, x, [x.ndim - 2, x.ndim - 1], f"spatial positions mixed by {rec.where}")
    out = []
    for a in axes:
        if a.shape[c] > 1:
            blocks = a.reshape(a.shape[:c] + (a.shape[c] // (r * r), r * r) + a.shape[c + 1 :])
            a = rec.coarsen(blocks, c + 1, f"channel blocks of {rec.where}").squeeze(c + 1)
        out.append(a)
    return x.with_axes(out, out_shape)


def pixel_unshuffle(rec: Recorder, x: Labels, r: int, out_shape) -> Labels:
    c = x.ndim - 3
    axes = pin_dims(rec, x, [x.ndim - 2, x.ndim - 1], f"spatial positions mixed by {rec.where}")
    return x.with_axes([a.repeat_interleave(r * r, dim=c) if a.shape[c] > 1 else a
                        for a in axes], out_shape)


def channel_shuffle(rec: Recorder, x: Labels, groups: int, out_shape) -> Labels:
    out = []
    for a in x.axes:
        if a.shape[1] > 1:
            if spans(a) != {1}:
                a = rec.coarsen(a, 1, f"shuffled by {rec.where}")
            else:
                g = a.reshape(a.shape[:1] + (groups, a.shape[1] // groups) + a.shape[2:])
                a = rec.coarsen(g, 1, f"channel groups shuffled by {rec.where}").squeeze(1)
                a = a.repeat_interleave(groups, dim=1)
        out.append(a)
    return x.with_axes(out, out_shape)


def advanced_index(rec: Recorder, x: Labels, indices: list, out_shape) -> Labels:
    """``x[idx0, idx1, ...]`` with index tensors: indexed dims are pinned, the others follow."""
    indexed = [i for i, t in enumerate(indices) if t is not None]
    axes = pin_dims(rec, x, indexed, f"gathered by index tensors at {rec.where}")
    kept = [d for d in range(x.ndim) if d not in indexed]
    contiguous = indexed == list(range(indexed[0], indexed[-1] + 1)) if indexed else True
    n_new = len(out_shape) - len(kept)
    out = []
    for a in axes:
        a = a.squeeze(indexed) if indexed else a
        if contiguous and indexed:
            at = indexed[0]
            a = a.reshape(a.shape[:at] + (1,) * n_new + a.shape[at:])
        else:
            a = a.reshape((1,) * n_new + tuple(a.shape))
        out.append(a)
    return Labels(tuple(out_shape), [compress(a) for a in out])
