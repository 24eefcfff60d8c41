"""Model families whose classes keep channel sizes as Python ints: their size updaters, and
the modules kept whole because their forward reads sizes no cut can keep consistent.

A family is consulted only when its library is already imported (a model of it exists, so the
import costs nothing); trainonce never imports it. Without these, such a model's slim version is
still exact, but as a traced program rather than the family's own class.
"""

from __future__ import annotations

import sys
from functools import cache

from torch import nn

from .registry import ModuleSizes


def _halves(m: nn.Module, old: dict) -> None:
    """ultralytics' CSP blocks split ``cv1``'s output into two halves of ``self.c`` channels
    (`split((self.c, self.c))`, or `chunk(2)` and `self.c` elsewhere); the analysis keeps the
    halves equal (`graph.shapes.split`), so ``c`` is half of cv1's cut width. Read from the
    weight: the parent's updater runs before its children's (``out_channels`` is still old)."""
    m.c = m.cv1.conv.weight.shape[0] // 2


@cache
def _ultralytics() -> tuple[tuple[ModuleSizes, ...], tuple[tuple[type, str], ...]]:
    if "ultralytics.nn.modules.block" not in sys.modules:
        return (), ()
    from ultralytics.nn.modules import block

    names = ("C2f", "C2fAttn", "C2PSA", "PSA", "RepNCSPELAN4")
    sizes = tuple(ModuleSizes(getattr(block, n), _halves) for n in names if hasattr(block, n))
    whole = ()
    if hasattr(block, "Attention"):
        # its forward views q/k/v with the stored num_heads/key_dim/head_dim and reshapes the
        # result to its input's channel count, which the cut of v does not follow
        whole = ((block.Attention, "ultralytics Attention reads its head sizes from stored "
                  "ints and its input's channel count"),)
    return sizes, whole


def _loaded() -> tuple[tuple[ModuleSizes, ...], tuple[tuple[type, str], ...]]:
    sizes, whole = _ultralytics()
    if not sizes and not whole:
        _ultralytics.cache_clear()  # not imported yet: look again next time
    return sizes, whole


def family_sizes(module: nn.Module) -> ModuleSizes | None:
    """The size updater a model family gives ``module``'s type, if any."""
    sizes, _ = _loaded()
    return next((s for s in sizes if isinstance(module, s.type)), None)


def kept_whole(model: nn.Module) -> dict[str, str]:
    """Names of the submodules of ``model`` whose parameters must be kept whole, with why."""
    _, whole = _loaded()
    if not whole:
        return {}
    out = {}
    for name, m in model.named_modules():
        why = next((w for t, w in whole if isinstance(m, t)), None)
        if why is not None and name:
            out[name] = why
    return out
