"""Resolve a user's ``module:function`` spec (their own model factory or dataset function)."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def resolve_callable(spec: str) -> Callable:
    """Import ``module`` and return its callable ``function``; a clear ValueError otherwise."""
    mod_name, _, fn_name = spec.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module '{mod_name}' of '{spec}': {exc}") from exc
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise ValueError(f"'{spec}': module '{mod_name}' has no callable '{fn_name}'")
    return fn
