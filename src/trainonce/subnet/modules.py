"""After cutting tensors, bring each module's Python-side sizes in line with its weights.

Layer types get their updater from the op table's entries (`graph/table.py`); Hugging Face and
timm attention modules keep sizes as attributes, handled here. Models whose forward uses other
stale sizes are caught by the output check in `construct_subnet`, which then falls back to a slim
exported program.
"""

from __future__ import annotations

from torch import nn

from ..graph.families import family_sizes
from ..graph.registry import module_sizes


def snapshot_sizes(model: nn.Module) -> dict[int, dict]:
    """What each module's size updater needs to know from before the cut, by module identity
    (layers may be deleted and renumbered in between)."""
    out = {}
    for m in model.modules():
        entry = _sizes(m)
        out[id(m)] = entry.snapshot(m) if entry is not None and entry.snapshot else {}
    return out


def update_sizes(model: nn.Module, before: dict[int, dict]) -> None:
    for m in model.modules():
        entry = _sizes(m)
        if entry is not None:
            entry.update(m, before.get(id(m), {}))
    for m in model.modules():  # after the layers: these read their children's new sizes
        _hf_sizes(m)


def _sizes(m: nn.Module):
    return module_sizes(m) or family_sizes(m)


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
