"""CPU latency of models measured side by side with ``torch.utils.benchmark``: median and IQR.

Rounds of ``Timer.blocked_autorange`` alternate between the models, so all of them see the same
machine load over the measurement and their ratio is meaningful even on a busy machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.benchmark import Measurement, Timer


@dataclass(frozen=True)
class Timing:
    """Seconds per forward pass: median and interquartile range over ``blocks`` timed blocks
    (each block the mean of many calls, as `torch.utils.benchmark` measures)."""

    median: float
    iqr: float
    blocks: int

    def text(self) -> str:
        """``1.23 ms ± 0.05`` (the ± is half the IQR)."""
        return f"{self.median * 1e3:.2f} ms ± {self.iqr * 1e3 / 2:.2f}"


def compare_latency(
    models: dict[str, nn.Module],
    x: torch.Tensor,
    *,
    num_threads: int = 1,
    rounds: int = 6,
    min_run_time: float = 0.05,
) -> dict[str, Timing]:
    """Time ``model(x)`` for every model in inference mode, ``rounds`` interleaved rounds of
    ``blocked_autorange(min_run_time)`` each (order reversed every other round so drift in the
    machine load cancels), merged per model."""
    models = {k: m.eval() for k, m in models.items()}
    timers = {
        k: Timer("m(x)", globals={"m": m, "x": x}, num_threads=num_threads, description=k)
        for k, m in models.items()
    }
    runs: dict[str, list[Measurement]] = {k: [] for k in models}
    names = list(models)
    with torch.inference_mode():  # grad mode is thread-local; the Timer runs in this thread
        for r in range(rounds):
            for k in names if r % 2 == 0 else names[::-1]:
                runs[k].append(timers[k].blocked_autorange(min_run_time=min_run_time))
    out = {}
    for k, ms in runs.items():
        (merged,) = Measurement.merge(ms)
        out[k] = Timing(merged.median, merged.iqr, len(merged.times))
    return out
