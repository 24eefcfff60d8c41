"""THE op table: every op trainonce understands, with its channel rule, its size rewrite for the
slim traced program and the module types that emit it, one entry per op.

Ops absent from the table are opaque: every channel they touch is kept whole, with a warning that
names the op and the module. A name here that is not an ATen op fails at import.
"""

from __future__ import annotations

import operator

import torch

from . import module_sizes as M
from . import resize as Z
from . import rules as R
from .registry import OpRule, ignore_ops, register_rule

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
    "_assert_tensor_metadata _assert_scalar sym_size sym_numel sym_stride sym_storage_offset "
    "sym_constrain_range_for_size sym_constrain_range item _local_scalar_dense _assert_async"
)

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
    ignore_ops(IGNORED)


_register_builtins()
