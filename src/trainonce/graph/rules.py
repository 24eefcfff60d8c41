"""THE op table: how channel positions map through each ATen op of an exported graph.

Keys are ATen overload packets (``torch.ops.aten.X``); values are rules
``rule(rec, args, kwargs, out) -> Labels | list[Labels]`` where tensor arguments have been
replaced by their `Labels` and ``out`` is the output shape (a list of shapes for multi-output
ops). Ops absent from the table are opaque: everything they touch is pinned, with a warning.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch

from . import layers as L
from . import shapes as S
from .labels import Labels, Recorder, unlabelled

aten = torch.ops.aten
Rule = Callable[[Recorder, list, dict, Any], Any]


def _tensors(args, kwargs) -> list[Labels]:
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
    return L.broadcast(rec, _tensors(args, kwargs), out)


def first(rec, args, kwargs, out):
    x = _tensors(args, kwargs)[0]
    if isinstance(out, list):
        return [Labels(tuple(o), list(x.axes), x.param_view, x.why) for o in out]
    return Labels(tuple(out), list(x.axes), x.param_view, x.why)


def gathered(rec, args, kwargs, out):
    """gather/scatter-style ops address positions by data: everything they touch is pinned."""
    for x in _tensors(args, kwargs):
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
        return [L.reduce(rec, x, dims, False, o) for o in out]
    return L.reduce(rec, x, dims, False, out)


def mixing_along(dim_index: int, default: int = -1) -> Rule:
    """Ops whose output keeps the shape but mixes positions along one dim (softmax, cumsum)."""

    def rule(rec, args, kwargs, out):
        dim = _arg(args, kwargs, dim_index, "dim", default)
        if isinstance(out, list):
            return [L.reduce(rec, args[0], [dim], True, o) for o in out]
        return L.reduce(rec, args[0], [dim], True, out)

    return rule


def pooling(rec, args, kwargs, out, *, k: int | None = None):
    outs = out if isinstance(out, list) else [out]
    x = args[0]
    res = [L.pool(rec, x, k if k is not None else x.ndim - 2, o) for o in outs]
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
    return L.conv(rec, x, w, b, groups, False, out)


def conv_transpose(rec, args, kwargs, out):
    x, w, b = args[0], args[1], _arg(args, kwargs, 2, "bias")
    groups = _arg(args, kwargs, 6, "groups", 1)
    return L.conv(rec, x, w, b, groups, True, out)


def convolution(rec, args, kwargs, out):
    x, w, b, transposed, groups = args[0], args[1], args[2], args[6], args[8]
    return L.conv(rec, x, w, b, groups, bool(transposed), out)


def batch_norm(rec, args, kwargs, out):
    x, params = args[0], [a for a in args[1:5] if isinstance(a, Labels) or a is None]
    outs = out if isinstance(out, list) else [out]
    res = L.channel_norm(rec, x, params, [0] + list(range(2, x.ndim)), outs[0], "batch norm")
    extra = [Labels(tuple(o), [a.reshape(-1) for a in res.axes if a.shape[1] > 1][:1])
             if len(o) == 1 else unlabelled(o, "norm statistics") for o in outs[1:]]
    return [res] + extra if isinstance(out, list) else res


def instance_norm(rec, args, kwargs, out):
    x, params = args[0], list(args[1:5])
    return L.channel_norm(rec, x, params, list(range(2, x.ndim)), out, "instance norm")


def group_norm(rec, args, kwargs, out):
    x, groups = args[0], args[1]
    params = [_arg(args, kwargs, 2, "weight"), _arg(args, kwargs, 3, "bias")]
    return L.group_norm(rec, x, groups, params, out)


def layer_norm(rec, args, kwargs, out):
    outs = out if isinstance(out, list) else [out]
    x, shape = args[0], list(args[1])
    params = [_arg(args, kwargs, 2, "weight"), _arg(args, kwargs, 3, "bias")]
    res = L.layer_norm(rec, x, len(shape), [p for p in params if isinstance(p, Labels)], outs[0])
    if isinstance(out, list):
        return [res] + [unlabelled(o, "norm statistics") for o in outs[1:]]
    return res


def rms_norm(rec, args, kwargs, out):
    x, shape, w = args[0], list(args[1]), _arg(args, kwargs, 2, "weight")
    return L.layer_norm(rec, x, len(shape), [w] if isinstance(w, Labels) else [], out)


def sdpa(rec, args, kwargs, out):
    q, k, v = args[:3]
    mask = _arg(args, kwargs, 3, "attn_mask")
    return L.sdpa(rec, q, k, v, mask if isinstance(mask, Labels) else None, out)


def getitem(rec, args, kwargs, out):
    seq, i = args
    return seq[i]


def _dims_arg(args, kwargs, i, name):
    d = _arg(args, kwargs, i, name)
    return [d] if isinstance(d, int) else d


_SHAPE: dict[Any, Rule] = {
    aten.permute: lambda r, a, k, o: S.permute(a[0], a[1], o),
    aten.transpose: lambda r, a, k, o: S.transpose(a[0], a[1], a[2], o),
    aten.swapaxes: lambda r, a, k, o: S.transpose(a[0], a[1], a[2], o),
    aten.swapdims: lambda r, a, k, o: S.transpose(a[0], a[1], a[2], o),
    aten.t: lambda r, a, k, o: S.transpose(a[0], 0, -1, o) if a[0].ndim == 2 else first(r, a, k, o),
    aten.movedim: lambda r, a, k, o: view_like(r, a, k, o) if a[0].ndim < 2 else S.permute(
        a[0], _movedim_perm(a[0].ndim, a[1], a[2]), o),
    aten.unsqueeze: lambda r, a, k, o: S.unsqueeze(a[0], a[1], o),
    aten.squeeze: lambda r, a, k, o: S.squeeze(a[0], _dims_arg(a, k, 1, "dim"), o),
    aten.expand: lambda r, a, k, o: S.expand(a[0], o),
    aten.expand_as: lambda r, a, k, o: S.expand(a[0], o),
    aten.slice: lambda r, a, k, o: S.slice_(a[0], _arg(a, k, 1, "dim", 0), _arg(a, k, 2, "start"),
                                            _arg(a, k, 3, "end"), _arg(a, k, 4, "step", 1), o),
    aten.narrow: lambda r, a, k, o: S.slice_(a[0], a[1], a[2], a[2] + a[3], 1, o),
    aten.select: lambda r, a, k, o: S.select(r, a[0], a[1], a[2], o),
    aten.cat: lambda r, a, k, o: S.cat(r, list(a[0]), _arg(a, k, 1, "dim", 0), o),
    aten.concat: lambda r, a, k, o: S.cat(r, list(a[0]), _arg(a, k, 1, "dim", 0), o),
    aten.concatenate: lambda r, a, k, o: S.cat(r, list(a[0]), _arg(a, k, 1, "dim", 0), o),
    aten.stack: lambda r, a, k, o: _stack(r, list(a[0]), _arg(a, k, 1, "dim", 0), o),
    aten.split: lambda r, a, k, o: S.split(a[0], _arg(a, k, 2, "dim", 0),
                                           [s[_arg(a, k, 2, "dim", 0)] for s in o], o),
    aten.split_with_sizes: lambda r, a, k, o: S.split(a[0], _arg(a, k, 2, "dim", 0),
                                                      list(a[1]), o),
    aten.chunk: lambda r, a, k, o: S.split(a[0], _arg(a, k, 2, "dim", 0),
                                           [s[_arg(a, k, 2, "dim", 0)] for s in o], o),
    aten.unbind: lambda r, a, k, o: S.unbind(r, a[0], _arg(a, k, 1, "dim", 0), o),
    aten.flip: lambda r, a, k, o: S.flip(a[0], a[1], o),
    aten.roll: lambda r, a, k, o: Labels(tuple(o), S.pin_dims(
        r, a[0], _dims_arg(a, k, 2, "dims") or range(a[0].ndim), f"rolled by {r.where}")),
    aten.repeat: lambda r, a, k, o: S.repeat(a[0], a[1], o),
    aten.tile: lambda r, a, k, o: S.repeat(a[0], [1] * (len(o) - len(a[1])) + list(a[1]), o),
    aten.pixel_shuffle: lambda r, a, k, o: S.pixel_shuffle(r, a[0], a[1], o),
    aten.pixel_unshuffle: lambda r, a, k, o: S.pixel_unshuffle(r, a[0], a[1], o),
    aten.channel_shuffle: lambda r, a, k, o: S.channel_shuffle(r, a[0], a[1], o),
    aten.native_channel_shuffle: lambda r, a, k, o: S.channel_shuffle(r, a[0], a[1], o),
    aten.index: lambda r, a, k, o: S.advanced_index(r, a[0], list(a[1]), o),
    aten.index_select: lambda r, a, k, o: Labels(tuple(o), S.pin_dims(
        r, a[0], [a[1]], f"gathered by an index tensor at {r.where}")),
    operator.getitem: getitem,
}

for _op in (aten.view, aten.reshape, aten._unsafe_view, aten.flatten, aten.unflatten,
            aten.view_as, aten.reshape_as, aten.ravel):
    _SHAPE[_op] = view_like


def _movedim_perm(n: int, src, dst) -> list[int]:
    src = [s % n for s in ([src] if isinstance(src, int) else src)]
    dst = [d % n for d in ([dst] if isinstance(dst, int) else dst)]
    rest = [d for d in range(n) if d not in src]
    perm = [-1] * n
    for s, d in zip(src, dst):
        perm[d] = s
    it = iter(rest)
    return [p if p >= 0 else next(it) for p in perm]


def _stack(rec, xs, dim, out):
    d = dim % len(out)
    parts = [S.unsqueeze(x, d, x.shape[:d] + (1,) + x.shape[d:]) for x in xs]
    return S.cat(rec, parts, d, out)


_LAYERS: dict[Any, Rule] = {
    aten.linear: lambda r, a, k, o: L.linear(r, a[0], a[1], _arg(a, k, 2, "bias"), o),
    aten.matmul: lambda r, a, k, o: L.matmul(r, a[0], a[1], o),
    aten.mm: lambda r, a, k, o: L.matmul(r, a[0], a[1], o),
    aten.bmm: lambda r, a, k, o: L.matmul(r, a[0], a[1], o),
    aten.addmm: lambda r, a, k, o: L.addmm(r, a[0], a[1], a[2], o),
    aten.einsum: lambda r, a, k, o: L.einsum(r, a[0], list(a[1]), o),
    aten.conv1d: conv, aten.conv2d: conv, aten.conv3d: conv,
    aten.conv_transpose1d: conv_transpose, aten.conv_transpose2d: conv_transpose,
    aten.conv_transpose3d: conv_transpose, aten.convolution: convolution,
    aten.batch_norm: batch_norm, aten._native_batch_norm_legit_no_training: batch_norm,
    aten.native_batch_norm: batch_norm,
    aten.instance_norm: instance_norm, aten.group_norm: group_norm,
    aten.layer_norm: layer_norm, aten.native_layer_norm: layer_norm, aten.rms_norm: rms_norm,
    aten.scaled_dot_product_attention: sdpa,
    aten.embedding: lambda r, a, k, o: L.embedding(r, a[0], a[1], o),
}

_ELEMENTWISE = (
    "add sub rsub mul div true_divide floor_divide remainder fmod pow maximum minimum fmax fmin "
    "where masked_fill copy lerp addcmul addcdiv clamp clip eq ne lt le gt ge logical_and "
    "logical_or logical_xor bitwise_and bitwise_or bitwise_xor __and__ __or__ __xor__ atan2 "
    "hypot relu relu6 gelu silu sigmoid tanh hardswish hardsigmoid hardtanh leaky_relu elu selu "
    "celu mish softplus softsign neg abs exp exp2 log log2 log10 log1p expm1 sqrt rsqrt "
    "reciprocal square sin cos tan asin acos atan sinh cosh erf erfc sign sgn floor ceil round "
    "trunc frac logical_not bitwise_not isnan isinf isfinite nan_to_num threshold clamp_min "
    "clamp_max fill logit sigmoid_backward xlogy"
)
_FIRST = (
    "dropout feature_dropout alpha_dropout feature_alpha_dropout native_dropout clone contiguous "
    "alias detach lift_fresh_copy to _to_copy type_as zeros_like ones_like full_like empty_like "
    "rand_like randn_like randint_like bernoulli zero"
)
_CREATION = (
    "arange zeros ones full empty new_zeros new_ones new_full new_empty scalar_tensor randn rand "
    "randint eye linspace empty_strided zeros_like_ tril_indices triu_indices"
)
_REDUCTIONS = (
    "sum mean amax amin max min argmax argmin var std var_mean std_mean norm linalg_vector_norm "
    "logsumexp prod all any nansum nanmean median"
)
_MIXING = "softmax _softmax log_softmax _log_softmax cumsum cumprod cummax cummin diff sort topk"
_IGNORED = (
    "_assert_tensor_metadata _assert_scalar sym_size sym_numel sym_stride sym_storage_offset "
    "_check_is_size sym_constrain_range_for_size sym_constrain_range item _local_scalar_dense "
    "_assert_async"
)


def _ops(names: str):
    for n in names.split():
        op = getattr(aten, n, None)
        if op is not None:
            yield op


TABLE: dict[Any, Rule] = {}
TABLE.update({op: elementwise for op in _ops(_ELEMENTWISE)})
TABLE.update({getattr(aten, n + "_"): elementwise for n in _ELEMENTWISE.split()
              if hasattr(aten, n + "_")})
TABLE.update({op: first for op in _ops(_FIRST)})
TABLE.update({getattr(aten, n + "_"): first for n in _FIRST.split() if hasattr(aten, n + "_")})
TABLE.update({op: creation for op in _ops(_CREATION)})
TABLE.update({op: reduction for op in _ops(_REDUCTIONS)})
TABLE.update({op: lambda r, a, k, o: reduction(r, a, k, o, dim_index=2)  # (x, ord, dim, ...)
              for op in _ops("norm linalg_vector_norm")})
TABLE.update({op: mixing_along(1) for op in _ops(_MIXING)})
TABLE[aten.diff] = mixing_along(2)
TABLE[aten.topk] = mixing_along(2)
TABLE.update(_SHAPE)
TABLE.update(_LAYERS)
TABLE.update({op: gathered for op in _ops("gather scatter scatter_add scatter_reduce "
                                          "take_along_dim index_put index_add masked_scatter")})
TABLE[aten.pad] = pad
TABLE[aten.constant_pad_nd] = pad
_SPATIAL = {
    1: "max_pool1d avg_pool1d adaptive_avg_pool1d adaptive_max_pool1d upsample_nearest1d "
       "upsample_linear1d reflection_pad1d replication_pad1d lp_pool1d",
    2: "max_pool2d max_pool2d_with_indices avg_pool2d adaptive_avg_pool2d adaptive_max_pool2d "
       "upsample_nearest2d upsample_bilinear2d upsample_bicubic2d _upsample_bilinear2d_aa "
       "_upsample_bicubic2d_aa _upsample_nearest_exact2d reflection_pad2d replication_pad2d "
       "fractional_max_pool2d lp_pool2d",
    3: "max_pool3d max_pool3d_with_indices avg_pool3d adaptive_avg_pool3d adaptive_max_pool3d "
       "upsample_nearest3d upsample_trilinear3d reflection_pad3d replication_pad3d",
}
for _k, _names in _SPATIAL.items():
    TABLE.update({op: spatial(_k) for op in _ops(_names)})
IGNORED = {op for op in _ops(_IGNORED)}


def lookup(target) -> Rule | None:
    """The rule for a node target (an OpOverload, its packet, or a Python callable)."""
    rule = TABLE.get(target)
    if rule is None:
        packet = getattr(target, "overloadpacket", None)
        rule = TABLE.get(packet) if packet is not None else None
    return rule


def is_ignored(target) -> bool:
    return getattr(target, "overloadpacket", target) in IGNORED
