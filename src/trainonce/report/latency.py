"""CPU latency of two models measured side by side: interleaved calls, median per model.

Interleaving makes both models see the same machine load, so their ratio is meaningful.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn


@torch.inference_mode()
def compare_latency(
    models: dict[str, nn.Module], x: torch.Tensor, repeats: int = 31, warmup: int = 3
) -> dict[str, float]:
    """Median seconds per forward pass of each model on ``x``, calls interleaved A B A B ..."""
    models = {k: m.eval() for k, m in models.items()}
    times: dict[str, list[float]] = {k: [] for k in models}
    for i in range(warmup + repeats):
        for k, m in models.items():
            t0 = time.perf_counter()
            m(x)
            dt = time.perf_counter() - t0
            if i >= warmup:
                times[k].append(dt)
    return {k: statistics.median(v) for k, v in times.items()}
