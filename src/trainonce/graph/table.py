"""THE op table: every op trainonce understands, one entry each, with its channel rule, size
rewrite, module types, zero rule and whether it is an erasing joint or shape-only.

Registered when `trainonce.graph` is imported. Ops absent from the table are opaque: every channel
they touch is kept whole, with a warning naming the op and the module. A name here that is not an
ATen op fails at import.
"""

from __future__ import annotations

import dataclasses
import operator

import torch

from . import module_sizes as M
from . import resize as Z
from . import rules as R
from . import zeros as ZR
from .registry import Joint, OpRule, ignore_ops, lookup, register_rule, resolve

aten = torch.ops.aten

# ----- families sharing one rule (names of torch.ops.aten) ------------------------------------
ELEMENTWISE = (
    "add sub rsub mul div true_divide floor_divide remainder fmod pow maximum minimum fmax fmin "
    "where masked_fill copy lerp addcmul addcdiv clamp clip eq ne lt le gt ge logical_and "
    "logical_or logical_xor bitwise_and bitwise_or bitwise_xor __and__ __or__ __xor__ atan2 "
    "hypot relu relu6 gelu silu sigmoid tanh hardswish hardsigmoid hardtanh leaky_relu elu selu "
    "celu mish softplus neg abs exp exp2 log log2 log10 log1p expm1 sqrt rsqrt "
    "reciprocal square sin cos tan asin acos atan sinh cosh erf erfc sign sgn floor ceil round "
    "trunc frac logical_not bitwise_not isnan isinf isfinite nan_to_num threshold clamp_min "
    "clamp_max fill logit sigmoid_backward xlogy"
)
SAME_LABELS = (  # the output carries the first tensor argument's labels unchanged
    "dropout feature_dropout alpha_dropout feature_alpha_dropout native_dropout clone contiguous "
    "alias detach lift_fresh_copy to _to_copy type_as zeros_like ones_like full_like empty_like "
    "rand_like randn_like randint_like bernoulli zero"
)
CREATION = (
    "arange zeros ones full empty scalar_tensor randn rand randint eye linspace empty_strided "
    "tril_indices triu_indices"
)
NEW_TENSOR = "new_zeros new_ones new_full new_empty"  # creation with a size argument
REDUCTIONS = (
    "sum mean amax amin max min argmax argmin var std var_mean std_mean logsumexp prod all any "
    "nansum nanmean median"
)
NORM_REDUCTIONS = "norm linalg_vector_norm"  # (x, ord, dim, ...)
MIXING_DIM1 = "softmax _softmax log_softmax _log_softmax cumsum cumprod cummax cummin sort"
MIXING_DIM2 = "diff topk"
GATHERED = "gather scatter scatter_add scatter_reduce take_along_dim index_put index_add " \
           "masked_scatter"
SIZED_VIEWS = "view reshape _unsafe_view"  # argument 1 is the new shape
VIEWS = "view_as reshape_as ravel flatten"
SPATIAL = {  # pooling / resampling / padding over the last k dims
    1: "max_pool1d avg_pool1d adaptive_avg_pool1d adaptive_max_pool1d upsample_nearest1d "
       "upsample_linear1d reflection_pad1d replication_pad1d",
    2: "max_pool2d max_pool2d_with_indices avg_pool2d adaptive_avg_pool2d adaptive_max_pool2d "
       "upsample_nearest2d upsample_bilinear2d upsample_bicubic2d _upsample_bilinear2d_aa "
       "_upsample_bicubic2d_aa _upsample_nearest_exact2d reflection_pad2d replication_pad2d "
       "fractional_max_pool2d",
    3: "max_pool3d max_pool3d_with_indices avg_pool3d adaptive_avg_pool3d adaptive_max_pool3d "
       "upsample_nearest3d upsample_trilinear3d reflection_pad3d replication_pad3d",
}
IGNORED = (  # no tensor data: shape asserts and symbolic sizes
    "_assert_scalar sym_size sym_numel sym_stride sym_storage_offset "
    "sym_constrain_range_for_size sym_constrain_range item _local_scalar_dense _assert_async"
)
METADATA_ASSERTS = "_assert_tensor_metadata"  # ignored too; stale after a cut: the slim drops it

_conv_resize = Z.conv_groups(6)

# ----- one entry per op with its own behaviour -------------------------------------------------
TABLE: dict[object, OpRule] = {
    # data movement
    aten.permute: OpRule(R.permute),
    aten.transpose: OpRule(R.transpose),
    aten.swapaxes: OpRule(R.transpose),
    aten.swapdims: OpRule(R.transpose),
    aten.t: OpRule(R.t),
    aten.numpy_T: OpRule(R.numpy_t),
    aten.movedim: OpRule(R.movedim),
    aten.unsqueeze: OpRule(R.unsqueeze),
    aten.squeeze: OpRule(R.squeeze),
    aten.expand: OpRule(R.expand, Z.shape_arg),
    aten.expand_as: OpRule(R.expand),
    aten.unflatten: OpRule(R.view_like, Z.unflatten),
    aten.slice: OpRule(R.slice_, Z.slice_),
    aten.narrow: OpRule(R.narrow, Z.narrow),
    aten.select: OpRule(R.select, Z.select),
    aten.cat: OpRule(R.cat),
    aten.concat: OpRule(R.cat),
    aten.concatenate: OpRule(R.cat),
    aten.stack: OpRule(R.stack),
    aten.split: OpRule(R.split, Z.split),
    aten.split_with_sizes: OpRule(R.split_with_sizes, Z.split),
    aten.chunk: OpRule(R.split, Z.split),
    aten.unbind: OpRule(R.unbind),
    aten.meshgrid: OpRule(R.meshgrid),  # both overloads: .default ("ij") and .indexing
    aten.flip: OpRule(R.flip),
    aten.roll: OpRule(R.roll),
    aten.repeat: OpRule(R.repeat),
    aten.tile: OpRule(R.tile),
    aten.pixel_shuffle: OpRule(R.pixel_shuffle),
    aten.pixel_unshuffle: OpRule(R.pixel_unshuffle),
    aten.channel_shuffle: OpRule(R.channel_shuffle),
    aten.native_channel_shuffle: OpRule(R.channel_shuffle),
    aten.index: OpRule(R.index),
    aten.index_select: OpRule(R.index_select),
    aten.pad: OpRule(R.pad),
    aten.constant_pad_nd: OpRule(R.pad),
    operator.getitem: OpRule(R.getitem),
    # computation
    aten.linear: OpRule(R.linear, modules=M.LINEAR),
    aten.matmul: OpRule(R.matmul),
    aten.mm: OpRule(R.matmul),
    aten.bmm: OpRule(R.matmul),
    aten.addmm: OpRule(R.addmm),
    aten.einsum: OpRule(R.einsum),
    aten.conv1d: OpRule(R.conv, _conv_resize, M.CONV),
    aten.conv2d: OpRule(R.conv, _conv_resize, M.CONV),
    aten.conv3d: OpRule(R.conv, _conv_resize, M.CONV),
    aten.conv_transpose1d: OpRule(R.conv_transpose, _conv_resize, M.CONV),
    aten.conv_transpose2d: OpRule(R.conv_transpose, _conv_resize, M.CONV),
    aten.conv_transpose3d: OpRule(R.conv_transpose, _conv_resize, M.CONV),
    aten.convolution: OpRule(R.convolution, Z.conv_groups(8), M.CONV),
    aten.batch_norm: OpRule(R.batch_norm, modules=M.BATCH_NORM),
    aten._native_batch_norm_legit_no_training: OpRule(R.batch_norm, modules=M.BATCH_NORM),
    aten.native_batch_norm: OpRule(R.batch_norm, modules=M.BATCH_NORM),
    aten.instance_norm: OpRule(R.instance_norm, modules=M.INSTANCE_NORM),
    aten.group_norm: OpRule(R.group_norm, Z.group_norm, M.GROUP_NORM),
    aten.layer_norm: OpRule(R.layer_norm, modules=M.LAYER_NORM),
    aten.native_layer_norm: OpRule(R.layer_norm, modules=M.LAYER_NORM),
    aten.rms_norm: OpRule(R.rms_norm, modules=M.RMS_NORM),
    aten.scaled_dot_product_attention: OpRule(R.sdpa),
    aten.embedding: OpRule(R.embedding, modules=M.EMBEDDING),
    aten.prelu: OpRule(R.prelu, modules=M.PRELU),
    aten.glu: OpRule(R.glu),
}


# ----- zero rules (erasing mode: is a structure's output exactly zero with its weights zero?) --
ZERO_PRESERVING = (  # f(0) = 0 in the first argument
    "relu relu6 gelu silu tanh hardswish hardtanh leaky_relu elu selu celu mish neg abs sqrt "
    "square sin tan asin atan sinh erf sign sgn floor ceil round trunc frac prelu glu "
    "dropout feature_dropout alpha_dropout feature_alpha_dropout clone contiguous alias detach "
    "lift_fresh_copy to _to_copy type_as view reshape _unsafe_view view_as reshape_as ravel "
    "flatten permute transpose swapaxes swapdims t numpy_T movedim unsqueeze squeeze expand "
    "expand_as unflatten slice narrow select flip roll repeat tile pixel_shuffle pixel_unshuffle "
    "channel_shuffle native_channel_shuffle index index_select split split_with_sizes chunk "
    "unbind sum mean amax amin nansum nanmean max_pool1d avg_pool1d adaptive_avg_pool1d "
    "upsample_nearest1d upsample_linear1d reflection_pad1d replication_pad1d max_pool2d "
    "avg_pool2d adaptive_avg_pool2d upsample_nearest2d upsample_bilinear2d upsample_bicubic2d "
    "_upsample_nearest_exact2d reflection_pad2d replication_pad2d max_pool3d avg_pool3d "
    "adaptive_avg_pool3d upsample_nearest3d upsample_trilinear3d reflection_pad3d "
    "replication_pad3d"
)
ZERO_FIRST_OUTPUT = (  # tuple-valued: output 0 is f(x) with f(0) = 0
    "max_pool2d_with_indices max_pool3d_with_indices adaptive_max_pool1d adaptive_max_pool2d "
    "adaptive_max_pool3d max min"
)
_conv_zero = ZR.affine(0, 1, 2)
ZERO_RULES: dict[str, ZR.ZeroRule] = {
    "add": ZR.both, "sub": ZR.both, "maximum": ZR.both, "minimum": ZR.both,
    "cat": ZR.every, "concat": ZR.every, "concatenate": ZR.every, "stack": ZR.every,
    "mul": ZR.product, "matmul": ZR.product, "mm": ZR.product, "bmm": ZR.product,
    "einsum": ZR.product, "div": ZR.at(0, "self"), "true_divide": ZR.at(0, "self"),
    "where": ZR.where, "constant_pad_nd": ZR.constant_pad, "pad": ZR.pad,
    "linear": _conv_zero, "conv1d": _conv_zero, "conv2d": _conv_zero, "conv3d": _conv_zero,
    "conv_transpose1d": _conv_zero, "conv_transpose2d": _conv_zero,
    "conv_transpose3d": _conv_zero, "convolution": _conv_zero,
    "addmm": ZR.affine(1, 2, 0, "self"),
    "batch_norm": ZR.normalised(1, 2), "instance_norm": ZR.normalised(1, 2),
    "_native_batch_norm_legit_no_training": ZR.normalised(1, 2, tuple_out=True),
    "native_batch_norm": ZR.normalised(1, 2, tuple_out=True),
    "group_norm": ZR.normalised(2, 3), "layer_norm": ZR.normalised(2, 3),
    "native_layer_norm": ZR.normalised(2, 3, tuple_out=True), "rms_norm": ZR.normalised(2, None),
    "scaled_dot_product_attention": ZR.at(2, "value"), "embedding": ZR.at(0, "weight"),
}


# ----- erasing joints and shape-only ops ------------------------------------------------------
JOINTS = {  # a removed structure entering one of these is dropped from it (`space.structures`)
    "add": Joint("sum", ("Tensor",)), "add_": Joint("sum", ("Tensor",), inplace=True),
    "sub": Joint("sum", ("Tensor",), subtracts=True),  # only as ``x - 0``
    "cat": Joint("concat"), "concat": Joint("concat"), "concatenate": Joint("concat"),
}
SHAPE_ONLY = (  # move or re-view one value: the dependency graph draws them as their input
    "permute view reshape _unsafe_view flatten transpose t contiguous clone unsqueeze squeeze "
    "expand alias dropout _to_copy to detach"
)


def _zero_rules() -> dict[object, ZR.ZeroRule]:
    named = [(n, ZR.first) for n in ZERO_PRESERVING.split()]
    named += [(n, ZR.first_of_tuple) for n in ZERO_FIRST_OUTPUT.split()]
    named += list(ZERO_RULES.items())
    rules: dict[object, ZR.ZeroRule] = {operator.getitem: ZR.getitem}
    for name, rule in named:
        rules[resolve(name)] = rule
        inplace = name + "_"  # the in-place variant, where the channel table has one
        if hasattr(aten, inplace) and lookup(resolve(inplace)) is not None:
            rules[resolve(inplace)] = rule
    return rules


def _with_inplace(names: str) -> str:
    """``names`` plus the in-place variant (``add_``) of each op that has one in ATen."""
    return " ".join(n + (f" {n}_" if hasattr(aten, n + "_") else "") for n in names.split())


def _register_builtins() -> None:
    families = [
        (_with_inplace(ELEMENTWISE), OpRule(R.elementwise)),
        (_with_inplace(SAME_LABELS), OpRule(R.first)),
        (CREATION, OpRule(R.creation)),
        (NEW_TENSOR, OpRule(R.creation, Z.shape_arg)),
        (REDUCTIONS, OpRule(R.reduction)),
        (NORM_REDUCTIONS, OpRule(R.norm_reduction)),
        (MIXING_DIM1, OpRule(R.mixing_along(1))),
        (MIXING_DIM2, OpRule(R.mixing_along(2))),
        (GATHERED, OpRule(R.gathered)),
        (SIZED_VIEWS, OpRule(R.view_like, Z.shape_arg)),
        (VIEWS, OpRule(R.view_like)),
    ] + [(names, OpRule(R.spatial(k))) for k, names in SPATIAL.items()]
    for names, entry in families:
        register_rule(names, entry)
    for op, entry in TABLE.items():
        register_rule(op, entry)
    facts: dict[object, dict] = {op: {"zero": zero} for op, zero in _zero_rules().items()}
    for name, joint in JOINTS.items():
        facts.setdefault(resolve(name), {})["joint"] = joint
    for name in SHAPE_ONLY.split():
        facts.setdefault(resolve(name), {})["shape_only"] = True
    for op, more in facts.items():  # the facts beyond the channel rule, on each op's entry
        entry = lookup(op)
        if entry is None:
            raise LookupError(f"{', '.join(more)} for {op}, which has no channel rule")
        register_rule(op, dataclasses.replace(entry, **more), replace=True)
    ignore_ops(IGNORED)
    ignore_ops(METADATA_ASSERTS, metadata_assert=True)


_register_builtins()
