"""After cutting tensors, bring each module's Python-side sizes in line with its weights.

One table: module type -> updater. Models whose forward uses other stale sizes are caught by the
output check in `construct_subnet`, which then falls back to a slim exported program.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def _conv(m: nn.Module, old: dict) -> None:
    w = m.weight
    per_group = old["out" if not m.transposed else "in"] // m.groups
    lead = w.shape[0]
    m.groups = max(1, lead // per_group) if m.groups > 1 else 1
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


def _snapshot(m: nn.Module) -> dict:
    if isinstance(m, CONVS):
        return {"out": m.out_channels, "in": m.in_channels}
    if isinstance(m, nn.GroupNorm):
        return {"channels": m.num_channels, "groups": m.num_groups}
    return {}


CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
         nn.ConvTranspose3d)

UPDATERS: list[tuple[type, Callable[[nn.Module, dict], None]]] = [
    (nn.Conv1d, _conv), (nn.Conv2d, _conv), (nn.Conv3d, _conv),
    (nn.ConvTranspose1d, _conv), (nn.ConvTranspose2d, _conv), (nn.ConvTranspose3d, _conv),
    (nn.Linear, _linear),
    (nn.BatchNorm1d, _norm), (nn.BatchNorm2d, _norm), (nn.BatchNorm3d, _norm),
    (nn.InstanceNorm1d, _norm), (nn.InstanceNorm2d, _norm), (nn.InstanceNorm3d, _norm),
    (nn.GroupNorm, _group_norm), (nn.LayerNorm, _layer_norm),
    (nn.Embedding, _embedding), (nn.PReLU, _prelu),
]


def snapshot_sizes(model: nn.Module) -> dict[str, dict]:
    return {name: _snapshot(m) for name, m in model.named_modules()}


def update_sizes(model: nn.Module, before: dict[str, dict]) -> None:
    for name, m in model.named_modules():
        for cls, fn in UPDATERS:
            if isinstance(m, cls):
                fn(m, before.get(name, {}))
                break
    for m in model.modules():  # after the layers: these read their children's new sizes
        _hf_sizes(m)


def _hf_sizes(m: nn.Module) -> None:
    """Hugging Face / timm modules that keep sizes as attributes (Conv1D, attention heads)."""
    w = getattr(m, "weight", None)
    if hasattr(m, "nf") and isinstance(w, nn.Parameter) and w.dim() == 2:  # GPT-2 Conv1D
        m.nx, m.nf = w.shape
    query = getattr(m, "query", None)
    if isinstance(query, nn.Linear) and hasattr(m, "attention_head_size"):
        m.all_head_size = query.out_features
        m.num_attention_heads = query.out_features // m.attention_head_size
    qkv = getattr(m, "qkv", None)  # timm Attention: reshape(B, N, 3, num_heads, head_dim)
    if isinstance(qkv, nn.Linear) and hasattr(m, "num_heads") and getattr(m, "head_dim", None):
        m.num_heads = qkv.out_features // (3 * m.head_dim)
        if hasattr(m, "attn_dim"):
            m.attn_dim = m.num_heads * m.head_dim
    c_attn = getattr(m, "c_attn", None)
    if c_attn is not None and hasattr(m, "split_size") and hasattr(m, "head_dim"):
        width = c_attn.weight.shape[-1] // (2 if getattr(m, "is_cross_attention", False) else 3)
        m.split_size = width
        m.num_heads = width // m.head_dim
