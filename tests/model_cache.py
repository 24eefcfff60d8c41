"""Session cache of analysed torchvision models: each (model, input size, mode) is built, made
zeroing-visible and traced once per test session, and handed out with its weights restored.

Analysis does not depend on weights, so tests that only read groups and tests that zero ZIGs
share one entry. Large entries are evicted first-in-first-out past a parameter budget, so the
cache never holds the whole zoo (vgg16_bn alone is 138M parameters) in memory.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from equivalence import analyze_untouched, make_zeroing_visible
from torch import nn

# torchvision constructor arguments for a test-sized model (no auxiliary heads, small ViT)
TORCHVISION_KWARGS = {
    "googlenet": {"aux_logits": False, "init_weights": False},
    "inception_v3": {"aux_logits": False, "init_weights": False},
    "vit_b_16": {"image_size": 32},
}
# a zoo run (23 models) peaks under ~1.5 GB with this budget; CI machines have 23 GB
MAX_CACHED_PARAMS = 150_000_000


class AnalysedModels:
    """``get(name, size, mode)`` -> ``(model, inputs, space)``, ``space.model is model``."""

    def __init__(self, max_params: int = MAX_CACHED_PARAMS):
        self.max_params = max_params
        self._entries: OrderedDict[tuple, tuple] = OrderedDict()
        self.builds = 0  # how many entries were built (tests read it to check the reuse)

    def get(self, name: str, size: int, mode: str = "prune"):
        key = (name, size, mode)
        if key not in self._entries:
            self._entries[key] = self._build(name, size, mode)
            self._evict()
        model, inputs, space, state = self._entries[key]
        with torch.no_grad():  # the weights the entry was built with, whatever a test did
            for t, saved in zip(_tensors(model), state):
                t.copy_(saved)
        model.eval()
        return model, inputs, space

    def _build(self, name: str, size: int, mode: str):
        import torchvision

        torch.manual_seed(0)
        model = getattr(torchvision.models, name)(weights=None, **TORCHVISION_KWARGS.get(name, {}))
        inputs = torch.randn(2, 3, size, size)
        make_zeroing_visible(model, inputs)
        space = analyze_untouched(model, inputs, mode=mode)  # and it left the model as it was
        self.builds += 1
        return model, inputs, space, [t.detach().clone() for t in _tensors(model)]

    def _evict(self) -> None:
        def held() -> int:
            return sum(sum(p.numel() for p in e[0].parameters()) for e in self._entries.values())

        while len(self._entries) > 1 and held() > self.max_params:
            self._entries.popitem(last=False)


def _tensors(model: nn.Module) -> list[torch.Tensor]:
    return list(model.parameters()) + list(model.buffers())
