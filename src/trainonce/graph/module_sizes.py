"""Size updaters of the standard layers: after a cut, a module's Python-side sizes (channels,
groups, features) are read back from its cut weights. Referenced by the op table's entries."""

from __future__ import annotations

from torch import nn

from .registry import ModuleSizes


def _conv_snapshot(m: nn.Module) -> dict:
    return {"out": m.out_channels, "in": m.in_channels}


def _conv(m: nn.Module, old: dict) -> None:
    w = m.weight
    per_group = old["out" if not m.transposed else "in"] // m.groups
    m.groups = max(1, w.shape[0] // per_group) if m.groups > 1 else 1
    if m.transposed:
        m.in_channels, m.out_channels = w.shape[0], w.shape[1] * m.groups
    else:
        m.out_channels, m.in_channels = w.shape[0], w.shape[1] * m.groups


def _linear(m: nn.Linear, old: dict) -> None:
    m.out_features, m.in_features = m.weight.shape


def _norm(m: nn.Module, old: dict) -> None:
    ref = m.weight if getattr(m, "weight", None) is not None else m.running_mean
    if ref is not None:
        m.num_features = ref.shape[0]


def _group_norm_snapshot(m: nn.GroupNorm) -> dict:
    return {"channels": m.num_channels, "groups": m.num_groups}


def _group_norm(m: nn.GroupNorm, old: dict) -> None:
    if m.weight is not None:
        per_group = old["channels"] // old["groups"]
        m.num_channels = m.weight.shape[0]
        m.num_groups = m.num_channels // per_group


def _layer_norm(m: nn.LayerNorm, old: dict) -> None:
    if m.weight is not None:
        m.normalized_shape = tuple(m.weight.shape)


def _embedding(m: nn.Embedding, old: dict) -> None:
    m.num_embeddings, m.embedding_dim = m.weight.shape


def _prelu(m: nn.PReLU, old: dict) -> None:
    m.num_parameters = m.weight.numel()


CONV = tuple(ModuleSizes(t, _conv, _conv_snapshot) for t in (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d))
LINEAR = (ModuleSizes(nn.Linear, _linear),)
BATCH_NORM = tuple(ModuleSizes(t, _norm) for t in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d))
INSTANCE_NORM = tuple(ModuleSizes(t, _norm)
                      for t in (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d))
GROUP_NORM = (ModuleSizes(nn.GroupNorm, _group_norm, _group_norm_snapshot),)
LAYER_NORM = (ModuleSizes(nn.LayerNorm, _layer_norm),)
EMBEDDING = (ModuleSizes(nn.Embedding, _embedding),)
PRELU = (ModuleSizes(nn.PReLU, _prelu),)
RMS_NORM = (ModuleSizes(nn.RMSNorm, _layer_norm),)
