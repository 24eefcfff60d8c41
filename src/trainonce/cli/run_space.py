"""The search space of a `trainonce run`: analysed at the run's alignment, and with the default
alignment (``--align`` not given) at the largest power of two that still reaches the target."""

from __future__ import annotations

import torch
from torch import nn

from .console import quiet_torch
from .setup import RunConfig


def reachable(cfg: RunConfig, space) -> bool:
    """Whether the run's FLOPs/params target can be met in ``space`` (other kinds: assumed)."""
    from ..optim.budgets import CostBudget, budget_kind
    from ..optim.targets import Pool

    cls = budget_kind(cfg.target_kind)
    if not issubclass(cls, CostBudget) or cfg.target_kind == "latency":
        return True
    return cls(cfg.target).reachable_bound(space, Pool.of(space)) <= cfg.target + 1e-12


def analyze_for_target(cfg: RunConfig, model: nn.Module, example: torch.Tensor):
    """The search space at ``cfg.align``; with the default alignment (``--align`` not given)
    halved until the target is reachable. ResNet8 keeps >= 13.5% of its FLOPs with align 8
    (its 16-channel groups keep 8), 3.5% with 4, 1.0% with 2: at --target-flops 0.1 / 0.05 the
    default run refused its own default. ``cfg.align`` becomes the alignment used (the config
    records it, so --resume analyses the same space)."""
    import trainonce

    while True:
        with quiet_torch():
            space = trainonce.analyze(model, (example,), mode=cfg.mode, align=cfg.align)
        if cfg.align == 1 or not cfg.extra.get("auto_align") or reachable(cfg, space):
            return space
        smaller = max(1, cfg.align // 2)
        print(f"--target-{cfg.target_kind} {cfg.target:g} cannot be reached with widths in "
              f"multiples of {cfg.align}; cutting to multiples of {smaller}")
        cfg.align = smaller
