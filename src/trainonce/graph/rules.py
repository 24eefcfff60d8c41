"""Channel rules: one adapter per op signature, reading the op's arguments and calling the
coupling helpers of `compute` (computation) and `shapes` (data movement).

A rule is ``rule(rec, args, kwargs, out) -> Labels | list[Labels]``: tensor arguments arrive as
their `Labels`, ``out`` is the traced output shape (a list for multi-output ops). The table that
maps each op to its rule is `graph/table.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from . import compute as C
from . import shapes as S
from .labels import Labels, Recorder, unlabelled
from .registry import RuleError

aten = torch.ops.aten
Rule = Callable[[Recorder, list, dict, Any], Any]


def tensor_args(args, kwargs) -> list[Labels]:
    """The `Labels` among an op's arguments (lists of tensors flattened), in order."""
    out = []
    for a in list(args) + list(kwargs.values()):
        if isinstance(a, Labels):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.extend(x for x in a if isinstance(x, Labels))
    return out


def _arg(args, kwargs, i: int, name: str, default=None):
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def elementwise(rec, args, kwargs, out):
    return C.broadcast(rec, tensor_args(args, kwargs), out)


def first(rec, args, kwargs, out):
    x = tensor_args(args, kwargs)[0]
    if isinstance(out, list):
        return [Labels(tuple(o), list(x.axes), x.param_view, x.why) for o in out]
    return Labels(tuple(out), list(x.axes), x.param_view, x.why)


def gathered(rec, args, kwargs, out):
    """gather/scatter-style ops address positions by data: everything they touch is pinned."""
    for x in tensor_args(args, kwargs):
        for a in x.axes:
            rec.block(a, f"addressed by data-dependent indices at {rec.where}")
    return unlabelled(out, f"the output of {rec.where}")


def view_like(rec, args, kwargs, out):
    return S.reshape(rec, args[0], out)


def creation(rec, args, kwargs, out):
    res = unlabelled(out, f"a constant created at {rec.where}")
    res.constant = True
    return res


def reduction(rec, args, kwargs, out, dim_index: int = 1):
    x = args[0]
    if len(args) > 1 and isinstance(args[1], Labels):  # max.other / min.other: element-wise
        return elementwise(rec, args, kwargs, out)
    dims = _arg(args, kwargs, dim_index, "dim")
    if not isinstance(dims, (int, list, tuple)):
        dims = None
    if isinstance(out, list):
        return [C.reduce(rec, x, dims, False, o) for o in out]
    return C.reduce(rec, x, dims, False, out)


def norm_reduction(rec, args, kwargs, out):
    """norm / linalg_vector_norm: ``(x, ord, dim, keepdim)``."""
    return reduction(rec, args, kwargs, out, dim_index=2)


def mixing_along(dim_index: int, default: int = -1) -> Rule:
    """Ops whose output keeps the shape but mixes positions along one dim (softmax, cumsum)."""

    def rule(rec, args, kwargs, out):
        dim = _arg(args, kwargs, dim_index, "dim", default)
        if isinstance(out, list):
            return [C.reduce(rec, args[0], [dim], True, o) for o in out]
        return C.reduce(rec, args[0], [dim], True, out)

    return rule


def pooling(rec, args, kwargs, out, *, k: int | None = None):
    outs = out if isinstance(out, list) else [out]
    x = args[0]
    res = [C.pool(rec, x, k if k is not None else x.ndim - 2, o) for o in outs]
    return res if isinstance(out, list) else res[0]


def spatial(k: int) -> Rule:
    return lambda rec, args, kwargs, out: pooling(rec, args, kwargs, out, k=k)


def pad(rec, args, kwargs, out):
    x, widths = args[0], list(args[1])
    mode = _arg(args, kwargs, 2, "mode", "constant")
    dims = [x.ndim - 1 - i // 2 for i in range(0, len(widths), 2)]
    if mode != "constant":
        return Labels(tuple(out), S.pin_dims(rec, x, dims, f"padded by {mode} at {rec.where}"))
    axes = []
    for a in x.axes:
        w = [widths[i] if a.shape[x.ndim - 1 - i // 2] > 1 else 0 for i in range(len(widths))]
        axes.append(torch.nn.functional.pad(a, w, value=0) if any(w) else a)
    return x.with_axes(axes, out)


def conv(rec, args, kwargs, out):
    x, w, b = args[0], args[1], _arg(args, kwargs, 2, "bias")
    groups = _arg(args, kwargs, 6, "groups", 1)
    return C.conv(rec, x, w, b, groups, False, out)


def conv_transpose(rec, args, kwargs, out):
    x, w, b = args[0], args[1], _arg(args, kwargs, 2, "bias")
    groups = _arg(args, kwargs, 6, "groups", 1)
    return C.conv(rec, x, w, b, groups, True, out)


def convolution(rec, args, kwargs, out):
    x, w, b, transposed, groups = args[0], args[1], args[2], args[6], args[8]
    return C.conv(rec, x, w, b, groups, bool(transposed), out)


def batch_norm(rec, args, kwargs, out):
    x, params = args[0], [a for a in args[1:5] if isinstance(a, Labels) or a is None]
    outs = out if isinstance(out, list) else [out]
    res = C.channel_norm(rec, x, params, [0] + list(range(2, x.ndim)), outs[0], "batch norm")
    extra = [Labels(tuple(o), [a.reshape(-1) for a in res.axes if a.shape[1] > 1][:1])
             if len(o) == 1 else unlabelled(o, "norm statistics") for o in outs[1:]]
    return [res] + extra if isinstance(out, list) else res


def instance_norm(rec, args, kwargs, out):
    x, params = args[0], list(args[1:5])
    return C.channel_norm(rec, x, params, list(range(2, x.ndim)), out, "instance norm")


def group_norm(rec, args, kwargs, out):
    x, groups = args[0], args[1]
    params = [_arg(args, kwargs, 2, "weight"), _arg(args, kwargs, 3, "bias")]
    return C.group_norm(rec, x, groups, params, out)


def layer_norm(rec, args, kwargs, out):
    outs = out if isinstance(out, list) else [out]
    x, shape = args[0], list(args[1])
    params = [_arg(args, kwargs, 2, "weight"), _arg(args, kwargs, 3, "bias")]
    res = C.layer_norm(rec, x, len(shape), [p for p in params if isinstance(p, Labels)], outs[0])
    if isinstance(out, list):
        return [res] + [unlabelled(o, "norm statistics") for o in outs[1:]]
    return res


def rms_norm(rec, args, kwargs, out):
    x, shape, w = args[0], list(args[1]), _arg(args, kwargs, 2, "weight")
    return C.layer_norm(rec, x, len(shape), [w] if isinstance(w, Labels) else [], out)


def sdpa(rec, args, kwargs, out):
    q, k, v = args[:3]
    mask = _arg(args, kwargs, 3, "attn_mask")
    return C.sdpa(rec, q, k, v, mask if isinstance(mask, Labels) else None, out)


def _dims_arg(args, kwargs, i, name):
    d = _arg(args, kwargs, i, name)
    return [d] if isinstance(d, int) else d


# ----- data movement (graph/shapes.py) ---------------------------------------------------------
def permute(rec, a, k, o):
    return S.permute(a[0], a[1], o)


def transpose(rec, a, k, o):
    return S.transpose(a[0], a[1], a[2], o)


def t(rec, a, k, o):
    return S.transpose(a[0], 0, -1, o) if a[0].ndim == 2 else first(rec, a, k, o)


def numpy_t(rec, a, k, o):
    """``x.T``: all dims reversed."""
    return S.permute(a[0], list(range(a[0].ndim))[::-1], o)


def movedim(rec, a, k, o):
    if a[0].ndim < 2:
        return view_like(rec, a, k, o)
    return S.permute(a[0], _movedim_perm(a[0].ndim, a[1], a[2]), o)


def unsqueeze(rec, a, k, o):
    return S.unsqueeze(a[0], a[1], o)


def squeeze(rec, a, k, o):
    return S.squeeze(a[0], _dims_arg(a, k, 1, "dim"), o)


def expand(rec, a, k, o):
    return S.expand(a[0], o)


def slice_(rec, a, k, o):
    return S.slice_(rec, a[0], _arg(a, k, 1, "dim", 0), _arg(a, k, 2, "start"),
                    _arg(a, k, 3, "end"), _arg(a, k, 4, "step", 1), o)


def narrow(rec, a, k, o):
    return S.slice_(rec, a[0], a[1], a[2], a[2] + a[3], 1, o)


def select(rec, a, k, o):
    return S.select(rec, a[0], a[1], a[2], o)


def cat(rec, a, k, o):
    return S.cat(rec, list(a[0]), _arg(a, k, 1, "dim", 0), o)


def stack(rec, a, k, o):
    xs, dim = list(a[0]), _arg(a, k, 1, "dim", 0)
    d = dim % len(o)
    parts = [S.unsqueeze(x, d, x.shape[:d] + (1,) + x.shape[d:]) for x in xs]
    return S.cat(rec, parts, d, o)


def split(rec, a, k, o):
    d = _arg(a, k, 2, "dim", 0)
    return S.split(rec, a[0], d, [s[d] for s in o], o)


def split_with_sizes(rec, a, k, o):
    return S.split(rec, a[0], _arg(a, k, 2, "dim", 0), list(a[1]), o)


def unbind(rec, a, k, o):
    return S.unbind(rec, a[0], _arg(a, k, 1, "dim", 0), o)


def meshgrid(rec, a, k, o):
    """``meshgrid([t0, ..., tn-1], indexing)``: output i is input i laid along one dim and
    repeated along the others, so its labels are input i's, placed there; the other inputs
    give only lengths (an anchor grid of ``arange`` of the feature map's size couples nothing).
    "ij" (``meshgrid.default`` too) places input i at dim i; "xy" swaps dims 0 and 1."""
    xs, indexing = list(a[0]), _arg(a, k, 1, "indexing", "ij")
    n = len(xs)
    if indexing not in ("ij", "xy") or not all(isinstance(x, Labels) and x.ndim <= 1
                                               for x in xs):
        raise RuleError(f"meshgrid with indexing={indexing!r} of inputs that are not 0-d or 1-d")
    at = list(range(n))
    if indexing == "xy" and n >= 2:
        at[0], at[1] = 1, 0
    lengths = [x.shape[0] if x.ndim else 1 for x in xs]
    grid = [0] * n
    for i, d in enumerate(at):
        grid[d] = lengths[i]
    if not isinstance(o, list) or len(o) != n or any(tuple(s) != tuple(grid) for s in o):
        raise RuleError(f"meshgrid outputs {o} are not the grid {grid} of its inputs")
    outs = []
    for x, d in zip(xs, at):
        axes = [ax.reshape([ax.numel() if j == d else 1 for j in range(n)]) for ax in x.axes]
        outs.append(Labels(tuple(grid), [], None, x.why, x.constant).with_axes(axes))
    return outs


def flip(rec, a, k, o):
    return S.flip(a[0], a[1], o)


def roll(rec, a, k, o):
    dims = _dims_arg(a, k, 2, "dims") or range(a[0].ndim)
    return Labels(tuple(o), S.pin_dims(rec, a[0], dims, f"rolled by {rec.where}"))


def repeat(rec, a, k, o):
    return S.repeat(a[0], a[1], o)


def tile(rec, a, k, o):
    return S.repeat(a[0], [1] * (len(o) - len(a[1])) + list(a[1]), o)


def pixel_shuffle(rec, a, k, o):
    return S.pixel_shuffle(rec, a[0], a[1], o)


def pixel_unshuffle(rec, a, k, o):
    return S.pixel_unshuffle(rec, a[0], a[1], o)


def channel_shuffle(rec, a, k, o):
    return S.channel_shuffle(rec, a[0], a[1], o)


def _used_as_indices(rec, tensors) -> None:
    """An index tensor computed from channel values addresses positions by data: pinned."""
    for t in tensors:
        if isinstance(t, Labels):
            for ax in t.axes:
                rec.block(ax, f"used as indices by {rec.where}")


def index(rec, a, k, o):
    _used_as_indices(rec, a[1])
    return S.advanced_index(rec, a[0], list(a[1]), o)


def index_select(rec, a, k, o):
    _used_as_indices(rec, [a[2]])
    return Labels(tuple(o), S.pin_dims(rec, a[0], [a[1]], f"gathered by an index tensor at "
                                                         f"{rec.where}"))


def getitem(rec, args, kwargs, out):
    seq, i = args
    return seq[i]


def _movedim_perm(n: int, src, dst) -> list[int]:
    src = [s % n for s in ([src] if isinstance(src, int) else src)]
    dst = [d % n for d in ([dst] if isinstance(dst, int) else dst)]
    rest = [d for d in range(n) if d not in src]
    perm = [-1] * n
    for s, d in zip(src, dst):
        perm[d] = s
    it = iter(rest)
    return [p if p >= 0 else next(it) for p in perm]


# ----- computation (graph/compute.py) ---------------------------------------------------------
def linear(rec, a, k, o):
    return C.linear(rec, a[0], a[1], _arg(a, k, 2, "bias"), o)


def matmul(rec, a, k, o):
    return C.matmul(rec, a[0], a[1], o)


def addmm(rec, a, k, o):
    return C.addmm(rec, a[0], a[1], a[2], o)


def einsum(rec, a, k, o):
    return C.einsum(rec, a[0], list(a[1]), o)


def embedding(rec, a, k, o):
    return C.embedding(rec, a[0], a[1], o)


def prelu(rec, a, k, o):
    """``prelu(x, w)``: ``w`` holds one slope per channel (dim 1), or a single shared one."""
    x, w = a[0], a[1]
    if w.shape[0] == 1:
        return elementwise(rec, a, k, o)
    cd = 1 if x.ndim > 1 else 0
    return C.per_channel(rec, x, [w], cd, o)


def glu(rec, a, k, o):
    """``glu(x, dim) = x[first half] * sigmoid(x[second half])``: position j of the output
    couples positions j and j + n/2 of ``x``."""
    x = a[0]
    d = _arg(a, k, 1, "dim", -1) % x.ndim
    half = x.shape[d] // 2
    lo = S.slice_(rec, x, d, 0, half, 1, o)
    hi = S.slice_(rec, x, d, half, 2 * half, 1, o)
    return C.broadcast(rec, [lo, hi], o)


