"""Erasing in the model's own classes: a layer of a ``nn.ModuleList`` whose every parameter lies
in removed structures (a pre-norm transformer layer without its attention and its MLP computes
``h + 0 + 0``) is deleted from the list, and a Hugging Face config follows."""

from __future__ import annotations

from torch import nn

from .hf import remember_and_set


def deletable_layers(model: nn.Module, erased: list) -> list[str] | None:
    """Names of the ``nn.ModuleList`` elements (e.g. ``model.layers.3``) that erasing ``erased``
    (pairs of `Structure` and ZIG) empties, if every erased structure lies in one of them, the
    model has a Hugging Face config, and each such layer has no parameter outside them; else
    None (the slim traced program does the erasing)."""
    if not erased or not hasattr(getattr(model, "config", None), "to_dict"):
        return None
    lists = {name for name, m in model.named_modules() if isinstance(m, nn.ModuleList)}
    gone = {p for s, _ in erased for p in s.params}
    layers: set[str] = set()
    for s, _ in erased:
        layer = _layer_of(s.params[0], lists)
        if layer is None or any(_layer_of(p, lists) != layer for p in s.params):
            return None
        layers.add(layer)
    for layer in layers:
        names = [f"{layer}.{n}" for n, _ in model.get_submodule(layer).named_parameters()]
        if not names or any(n not in gone for n in names):
            return None
    return sorted(layers, key=_natural)


def _layer_of(param: str, lists: set[str]) -> str | None:
    """The ``ModuleList`` element holding ``param`` (the innermost list), or None."""
    parts = param.split(".")
    for k in range(len(parts) - 2, 0, -1):
        if ".".join(parts[:k]) in lists:
            return ".".join(parts[: k + 1])
    return None


def _natural(name: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in name.split("."))


def delete_layers(model: nn.Module, layers: list[str]) -> list[str]:
    """Delete ``layers`` from their ``ModuleList``s; renumber the layers' own indices
    (``layer_idx``, which key the KV cache) and the Hugging Face config (``num_hidden_layers``
    and per-layer lists such as ``layer_types``). Returns notes on what was changed."""
    by_list: dict[str, list[int]] = {}
    for layer in layers:
        parent, _, idx = layer.rpartition(".")
        by_list.setdefault(parent, []).append(int(idx))
    notes = []
    for parent, idxs in by_list.items():
        modules: nn.ModuleList = model.get_submodule(parent)
        n = len(modules)
        for i in sorted(idxs, reverse=True):
            del modules[i]  # ModuleList renumbers its keys
        for new, layer in enumerate(modules):
            for sub in layer.modules():
                if isinstance(getattr(sub, "layer_idx", None), int):
                    sub.layer_idx = new
        notes.append(f"erasing: deleted layers {sorted(idxs)} of {parent} ({n} -> {len(modules)})")
        _update_config(model, n, sorted(idxs))
    return notes


def _update_config(model: nn.Module, n: int, removed: list[int]) -> None:
    config = getattr(model, "config", None)
    if config is None:
        return
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if getattr(config, key, None) == n:
            remember_and_set(config, key, n - len(removed))
    for key, value in list(vars(config).items()):  # per-layer lists: layer_types, ...
        if isinstance(value, list) and len(value) == n and key != "architectures":
            kept = [v for i, v in enumerate(value) if i not in set(removed)]
            remember_and_set(config, key, kept)
