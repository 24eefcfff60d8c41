"""Channel couplings of ops that compute (linear algebra, convolution, normalisation, attention,
embeddings, reductions, pooling); `shapes` does the ops that only move data. Both use the engine."""

from __future__ import annotations

import math

import torch

from .engine import Operand, couple, couple_broadcast
from .labels import Labels, Recorder, spans
from .shapes import pin_dims

_LEAD = "ABCDEFGHIJKLMN"


def _lead(n: int) -> str:
    return _LEAD[:n]


def linear(rec: Recorder, x: Labels, w: Labels, b: Labels | None, out_shape) -> Labels:
    lead = _lead(x.ndim - 1)
    ops = [Operand(x, lead + "i"), Operand(w, "oi")]
    if b is not None:
        ops.append(Operand(b, "o"))
    return Labels(tuple(out_shape), couple(rec, ops, lead + "o", flops=True))


def matmul(rec: Recorder, a: Labels, b: Labels, out_shape) -> Labels:
    """torch.matmul semantics, including 1-D operands and broadcast batch dims."""
    if a.ndim == 1 and b.ndim == 1:
        return Labels(tuple(out_shape), couple(rec, [Operand(a, "k"), Operand(b, "k")], "",
                                               flops=True))
    batch = max(a.ndim, b.ndim) - 2
    la = "k" if a.ndim == 1 else _lead(batch)[batch - (a.ndim - 2):] + "mk"
    lb = "k" if b.ndim == 1 else _lead(batch)[batch - (b.ndim - 2):] + "kn"
    out = _lead(batch) + ("m" if a.ndim > 1 else "") + ("n" if b.ndim > 1 else "")
    return Labels(tuple(out_shape), couple(rec, [Operand(a, la), Operand(b, lb)], out, flops=True))


def addmm(rec: Recorder, bias: Labels, a: Labels, b: Labels, out_shape) -> Labels:
    ops = [Operand(a, "mk"), Operand(b, "kn"), Operand(bias, "mn"[2 - bias.ndim:])]
    return Labels(tuple(out_shape), couple(rec, ops, "mn", flops=True))


def einsum(rec: Recorder, equation: str, xs: list[Labels], out_shape) -> Labels:
    eq = equation.replace(" ", "")
    lhs, _, rhs = eq.partition("->")
    terms = lhs.split(",")
    free = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in eq]
    ell_n = max((x.ndim - (len(t) - 3) for t, x in zip(terms, xs) if "..." in t), default=0)
    ell = "".join(free[:ell_n])
    letters = []
    for t, x in zip(terms, xs):
        if "..." in t:
            k = x.ndim - (len(t) - 3)
            t = t.replace("...", ell[ell_n - k:])
        letters.append(t)
    if not rhs and "->" not in eq:
        rhs = "".join(sorted(c for c in set("".join(letters)) if "".join(letters).count(c) == 1))
    rhs = rhs.replace("...", ell)
    ops = [Operand(x, t) for x, t in zip(xs, letters)]
    return Labels(tuple(out_shape), couple(rec, ops, rhs, flops=True))


def conv(rec: Recorder, x: Labels, w: Labels, b: Labels | None, groups: int, transposed: bool,
         out_shape) -> Labels:
    """Convolution: whole groups couple input and output channels (depthwise = one channel)."""
    k = w.ndim - 2  # spatial rank
    cd = x.ndim - k - 1  # channel dim of x (0 when unbatched)
    spatial = f"spatial positions mixed by {rec.where}"
    x = Labels(x.shape, pin_dims(rec, x, range(cd + 1, x.ndim), spatial), None, x.why)
    w_axes = pin_dims(rec, w, range(2, w.ndim), f"kernel taps of {rec.where}")
    w = Labels(w.shape, w_axes, w.param_view, w.why)
    in_dim, out_dim = (1, 0) if not transposed else (0, 1)
    lead = _lead(cd)
    c_out = out_shape[cd]
    macs = math.prod(out_shape[:cd]) * math.prod(out_shape[cd + 1:]) * math.prod(w.shape[2:])
    if groups == 1:
        xl = Operand(Labels(x.shape[: cd + 1], [a.reshape(a.shape[: cd + 1]) for a in x.axes],
                            None, x.why), lead + "i")
        wl = Operand(Labels(w.shape[:2], [a.reshape(a.shape[:2]) for a in w.axes], w.param_view,
                            w.why), "oi" if not transposed else "io")
        ops = [xl, wl] + ([Operand(b, "o")] if b is not None else [])
        axes = couple(rec, ops, lead + "o")
        out_axis = next((a for a in axes if a.shape[-1] > 1), None)
        in_axis = next((a for a in wl.labels.axes if a.shape[in_dim] > 1), None)
        vecs = [v for v in (out_axis, in_axis) if v is not None]
        unit = macs * (1 if out_axis is not None else c_out)
        unit *= 1 if in_axis is not None else w.shape[in_dim]
        rec.cost("flops", unit, [v.reshape(-1) for v in vecs])
        return Labels(tuple(out_shape), [a.reshape(a.shape + (1,) * k) for a in axes])
    return _grouped_conv(rec, x, w, b, groups, cd, macs, out_shape)


def _grouped_conv(rec: Recorder, x: Labels, w: Labels, b: Labels | None, groups: int, cd: int,
                  macs: float, out_shape) -> Labels:
    """Channel j of group g is removable only with its whole group (depthwise: one channel).
    Weight dim 0 is absolute (out channels, or in channels when transposed); dim 1 is the
    position inside a group, shared by all groups, so it is pinned."""
    reason = f"inside a channel group of {rec.where}"
    c_in, c_out = x.shape[cd], out_shape[cd]
    for a in w.axes:
        if a.shape[1] > 1:
            rec.block(a, reason)
    xa = x.axis_spanning(cd)
    if xa is not None and spans(xa) != {cd}:
        xa = None  # a joint layout cannot be cut group-wise: pin it below
    per_group = [rec.coarsen(a.reshape(groups, -1), 1, reason) for a in (
        xa.reshape(-1) if xa is not None else None,
        next((a.reshape(-1) for a in w.axes if a.shape[0] > 1), None),
        next((a.reshape(-1) for a in (b.axes if b is not None else [])), None),
    ) if a is not None]
    if xa is None:
        rec.block(torch.cat([g.reshape(-1) for g in per_group]) if per_group
                  else torch.zeros(0, dtype=torch.long), f"meets {x.why} at {rec.where}")
        for a in x.axes:
            if a.shape[cd] > 1:
                rec.block(a, reason)
        rec.cost("flops", macs * c_out * (c_in // groups), [])
        return Labels(tuple(out_shape), [], None, f"the output of {rec.where}")
    base = per_group[0]
    for other in per_group[1:]:
        rec.union(base, other, f"coupled at {rec.where}")
    line = base.reshape(-1).repeat_interleave(c_out // groups)
    rec.cost("flops", macs * (c_in // groups), [line])
    shape = [1] * len(out_shape)
    shape[cd] = c_out
    return Labels(tuple(out_shape), [line.reshape(shape)])


def channel_norm(rec: Recorder, x: Labels, params: list[Labels | None], reduce_dims, out_shape,
                 what: str) -> Labels:
    """Per-channel affine norms (batch/instance norm): channel dim 1 couples its parameters."""
    cd = 1 if x.ndim > 1 else 0
    axes = pin_dims(rec, x, reduce_dims, f"statistics taken over them by {rec.where}")
    x = Labels(x.shape, axes, None, x.why)
    letters = "abcdefgh"[: x.ndim]
    ops = [Operand(x, letters)] + [Operand(p, letters[cd]) for p in params if p is not None]
    return Labels(tuple(out_shape), couple(rec, ops, letters))


def per_channel(rec: Recorder, x: Labels, params: list[Labels], cd: int, out_shape) -> Labels:
    """An element-wise op with one parameter value per channel (dim ``cd``), e.g. PReLU."""
    letters = "abcdefgh"[: x.ndim]
    ops = [Operand(x, letters)] + [Operand(p, letters[cd]) for p in params]
    return Labels(tuple(out_shape), couple(rec, ops, letters))


def layer_norm(rec: Recorder, x: Labels, k: int, params: list[Labels | None], out_shape) -> Labels:
    """Normalised over the last ``k`` dims: those positions can never be removed."""
    letters = "abcdefgh"[: x.ndim]
    tail = letters[x.ndim - k:]
    ops = [Operand(x, letters)] + [Operand(p, tail[len(tail) - p.ndim:]) for p in params
                                   if p is not None]
    return Labels(tuple(out_shape), couple(rec, ops, letters, fixed=tail,
                                           fixed_reason=f"normalised over by {rec.where}"))


def group_norm(rec: Recorder, x: Labels, groups: int, params: list[Labels | None],
               out_shape) -> Labels:
    reason = f"normalised together within a group of {rec.where}"
    axes = pin_dims(rec, x, range(2, x.ndim), reason)
    out_axes = []
    for a in axes:
        if a.shape[1] > 1 and spans(a) == {1}:
            c = a.shape[1]
            g = rec.coarsen(a.reshape(groups, c // groups), 1, reason)
            a = g.repeat_interleave(c // groups).reshape(a.shape)
        elif a.shape[1] > 1:
            a = rec.coarsen(a, 1, reason)
        out_axes.append(a)
    x = Labels(x.shape, out_axes, None, x.why)
    letters = "abcdefgh"[: x.ndim]
    ops = [Operand(x, letters)] + [Operand(p, "b") for p in params if p is not None]
    return Labels(tuple(out_shape), couple(rec, ops, letters))


def sdpa(rec: Recorder, q: Labels, k: Labels, v: Labels, mask: Labels | None, out_shape) -> Labels:
    """Attention: heads couple q/k/v/output (GQA: a kv head with its query heads); the
    sequence and head dims are never cut, so only whole heads are removed."""
    n = q.ndim
    lead = _lead(n - 3)
    h_q, h_kv = q.shape[-3], k.shape[-3]

    def heads(x: Labels) -> Labels:
        if h_kv == h_q or x.shape[-3] != h_kv:
            return x
        rep = h_q // h_kv
        return Labels(x.shape[:-3] + (h_q,) + x.shape[-2:],
                      [a.repeat_interleave(rep, dim=n - 3) if a.shape[n - 3] > 1 else a
                       for a in x.axes], x.param_view, x.why)

    ops = [Operand(q, lead + "hle"), Operand(heads(k), lead + "hse"),
           Operand(heads(v), lead + "hsf")]
    if mask is not None:
        ops.append(Operand(mask, (lead + "hls")[len(lead) + 3 - mask.ndim:]))
    axes = couple(rec, ops, lead + "hlf", fixed="esf",
                  fixed_reason=f"attention sequence/head_dim of {rec.where}")
    b = math.prod(q.shape[:-3])
    h_axis = next((a for a in axes if a.shape[n - 3] > 1), None)
    unit = b * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1])
    if h_axis is None:
        rec.cost("flops", unit * h_q, [])
    else:
        rec.cost("flops", unit, [h_axis.reshape(-1)])
    return Labels(tuple(out_shape), axes)


def embedding(rec: Recorder, w: Labels, idx: Labels, out_shape) -> Labels:
    for a in w.axes:
        if a.shape[0] > 1:
            rec.block(a, f"rows looked up by token id in {rec.where}")
    for a in idx.axes:
        rec.block(a, f"used as indices by {rec.where}")
    e = next((a for a in w.axes if a.shape[1] > 1), None)
    if e is None:
        return Labels(tuple(out_shape), [], None, "an embedding lookup")
    shape = [1] * len(out_shape)
    shape[-1] = e.numel()
    return Labels(tuple(out_shape), [e.reshape(shape)])


def reduce(rec: Recorder, x: Labels, dims, keepdim: bool, out_shape) -> Labels:
    """Reductions and ops that mix positions along ``dims`` (softmax, cumsum, sort...)."""
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        dims = list(range(x.ndim))
    if isinstance(dims, int):
        dims = [dims]
    dims = sorted({d % x.ndim for d in dims}) if x.ndim else []
    axes = pin_dims(rec, x, dims, f"reduced over by {rec.where}")
    if len(out_shape) != x.ndim:  # dims dropped
        axes = [a.squeeze(tuple(dims)) if dims else a for a in axes]
    return Labels(tuple(out_shape), axes)


def pool(rec: Recorder, x: Labels, k: int, out_shape) -> Labels:
    """Pooling / resampling over the last ``k`` dims; the others pass through."""
    axes = pin_dims(rec, x, range(x.ndim - k, x.ndim), f"spatial positions mixed by {rec.where}")
    return Labels(tuple(out_shape), axes)


def opaque(rec: Recorder, inputs: list[Labels], out_shapes, reason: str) -> list[Labels]:
    """An op whose channel mapping is unknown: pin everything it touches."""
    for x in inputs:
        for a in x.axes:
            rec.block(a, reason)
    return [Labels(tuple(s), [], None, f"the output of {rec.where}") for s in out_shapes]


def broadcast(rec: Recorder, xs: list[Labels], out_shape) -> Labels:
    """A broadcasting element-wise op (add, mul, relu...): the output's labels."""
    return Labels(tuple(out_shape), couple_broadcast(rec, xs, out_shape))
