"""Deterministic in-memory training for tests, benchmarks and examples: seeded shuffles, a
cosine learning rate, one optimizer step per mini-batch. The CLI's loop (cli/train.py) is the
full-featured one; this is the few lines every measurement would otherwise repeat.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def minibatches(n: int, epochs: int, seed: int = 0, batch_size: int = 64) -> Iterator[Tensor]:
    """Index tensors of the mini-batches of ``epochs`` passes over ``n`` samples, reshuffled
    every epoch by a generator seeded with ``seed`` (the last batch of an epoch may be short)."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for k in range(0, n, batch_size):
            yield perm[k : k + batch_size]


def minibatches_per_epoch(n: int, batch_size: int = 64) -> int:
    """How many batches `minibatches` yields per epoch: ``ceil(n / batch_size)``, the short last
    one included (the CLI's loop drops it: `trainonce.cli.train.full_batches_per_epoch`)."""
    return (n + batch_size - 1) // batch_size


def fit(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    epochs: int,
    *,
    seed: int = 0,
    batch_size: int = 64,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
) -> nn.Module:
    """Trains ``model`` in train mode on ``(x, y)`` with ``opt`` under a cosine learning rate
    over the whole run; returns it in eval mode."""
    total = epochs * minibatches_per_epoch(len(y), batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total)
    model.train()
    for idx in minibatches(len(y), epochs, seed, batch_size):
        opt.zero_grad()
        loss_fn(model(x[idx]), y[idx]).backward()
        opt.step()
        sched.step()
    return model.eval()
