"""Helpers for the optimizer tests: runs on hand-built spaces (see handspace.py), small data.

A uniquely named module (not conftest), so spawned DDP workers import the right one."""

from __future__ import annotations

import torch
from handspace import SmallCNN, smallcnn_space

from trainonce.optim import OPTIMIZERS as REGISTRY
from trainonce.optim.budgets import GroupSparsity

# Every registered optimizer (ATO and any registered later): the contract tests iterate these.
OPTIMIZERS = list(REGISTRY.values())


def name(cls) -> str:
    """A test id: the class name."""
    return cls.__name__


def target_kw(cls, sparsity: float = 0.4, flops: float = 0.5) -> dict:
    """A group-sparsity target where ``cls`` takes one, else a FLOPs target (its
    ``budgets`` say which; ATO keeps a cost share only)."""
    if GroupSparsity in cls.budgets:
        return {"target_group_sparsity": sparsity}
    return {"target_flops": flops}


def periods(cls, n: int) -> int:
    """``n`` pruning periods, or as many as ``cls`` has (ATO: its one controller phase)."""
    return n if cls.max_pruning_periods is None else min(n, cls.max_pruning_periods)


def toy_batch(step: int, n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic learnable toy batch for step ``step`` (class = brightest quadrant + ...)."""
    g = torch.Generator().manual_seed(1000 + step)
    y = torch.randint(0, 10, (n,), generator=g)
    x = torch.randn(n, 1, 8, 8, generator=g) * 0.5
    x[torch.arange(n), 0, y % 8, (y * 3) % 8] += 3.0
    return x, y


def make_run(cls, seed: int = 0, widths=(8, 8, 16), **kw):
    """A fresh (model, space, optimizer) triple; an optimizer that ``needs_loss_fn`` gets one on
    a fixed held-out batch."""
    torch.manual_seed(seed)
    model = SmallCNN(widths)
    space = smallcnn_space(model)
    if cls.needs_loss_fn:
        xb, yb = toy_batch(-1, 64)
        kw.setdefault("loss_fn", lambda: torch.nn.functional.cross_entropy(model(xb), yb))
    opt = cls(space, **kw)
    return model, space, opt


def train_steps(
    model, opt, start: int, stop: int, clip: float | None = None, leak: float = 0.0
) -> None:
    """``leak`` adds ``leak * sum(all weights)``: a loss term whose gradient is non-zero on
    every weight (as an L1 term or a distillation on weights would be), so zero groups are not
    a fixed point of the gradient and only the optimizer's masking keeps them at zero."""
    model.train()
    for t in range(start, stop):
        x, y = toy_batch(t)
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        if leak:
            loss = loss + leak * sum(p.sum() for p in model.parameters())
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
