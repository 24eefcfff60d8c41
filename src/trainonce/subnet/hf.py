"""Hugging Face configs: keep shape-driving fields true after a cut, where one value fits all
layers (per-layer widths that differ cannot be written into one config; we say so)."""

from __future__ import annotations

from torch import nn

FULL_SIZES = "trainonce_full_sizes"  # config attribute: the values a cut replaced


def remember_and_set(config, key: str, value: object) -> None:
    """Set a config size, remembering the full model's value (`trainonce.hf.save_pretrained`
    writes the full config, so the cut can be applied again on reload)."""
    full = dict(getattr(config, FULL_SIZES, None) or {})
    full.setdefault(key, getattr(config, key))
    setattr(config, FULL_SIZES, full)
    setattr(config, key, value)


def _uniform(values: list[int]) -> int | None:
    return values[0] if values and all(v == values[0] for v in values) else None


def update_hf_config(model: nn.Module) -> list[str]:
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        return []
    notes = []
    ends = ("mlp.up_proj", "intermediate.dense", "mlp.c_fc")
    mlp = [m for name, m in model.named_modules() if name.endswith(ends)]
    widths = [m.weight.shape[0] if isinstance(m, nn.Linear) else m.weight.shape[-1] for m in mlp]
    if widths and hasattr(config, "intermediate_size"):
        w = _uniform(widths)
        if w is not None:
            remember_and_set(config, "intermediate_size", w)
        else:
            notes.append(f"MLP widths differ per layer ({min(widths)}..{max(widths)}); "
                         "config.intermediate_size left as is: reload with trainonce.load or "
                         "trainonce.hf.from_pretrained")
    heads = []
    for m in model.modules():
        q = getattr(m, "q_proj", None) or getattr(m, "query", None)
        hd = getattr(m, "head_dim", None) or getattr(m, "attention_head_size", None)
        if isinstance(q, nn.Linear) and hd:
            kv = getattr(m, "k_proj", None) or getattr(m, "key", None)
            heads.append((q.out_features // hd, kv.out_features // hd if kv is not None else 0))
    if heads and hasattr(config, "num_attention_heads"):
        h = _uniform([a for a, _ in heads])
        kvh = _uniform([b for _, b in heads])
        if h is not None and getattr(config, "head_dim", None):
            remember_and_set(config, "num_attention_heads", h)
            if getattr(config, "num_key_value_heads", None) is not None and kvh:
                remember_and_set(config, "num_key_value_heads", kvh)
        else:
            notes.append("config.num_attention_heads left as is (heads differ per layer, or the "
                         "config derives head size from it): reload with trainonce.load or "
                         "trainonce.hf.from_pretrained")
    return notes
