"""The training loop of ``trainonce run``: deterministic batches, a tqdm bar, Ctrl-C checkpoints.

Batch order depends only on (seed, epoch), so a resumed run continues with the same batches.
"""

from __future__ import annotations

import math
import signal
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..data.optional import require
from .checkpoint import save_checkpoint


class Interrupted(Exception):
    """Raised after Ctrl-C once a consistent checkpoint has been written."""

    def __init__(self, path: Path, step: int) -> None:
        super().__init__(f"interrupted at step {step}; checkpoint saved to {path}")
        self.path, self.step = path, step


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, n // batch_size) if n >= batch_size else 1


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=gen).tolist()
    k = steps_per_epoch(n, batch_size)
    return [perm[i * batch_size : (i + 1) * batch_size] for i in range(k)]


@torch.no_grad()
def evaluate(model: nn.Module, ds: Dataset, adapt: Callable, device, batch_size: int = 256):
    was_training = model.training
    model.eval()
    correct = total = 0
    for x, y in DataLoader(ds, batch_size=batch_size):
        out = model(adapt(x.to(device)))
        correct += int((out.argmax(1) == y.to(device)).sum())
        total += y.numel()
    model.train(was_training)
    return correct / max(total, 1)


class _SigintFlag:
    """First Ctrl-C sets a flag (the loop stops after the current step); a second one aborts."""

    def __init__(self) -> None:
        self.hit = False

    def __enter__(self):
        self._old = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.hit:
            raise KeyboardInterrupt
        self.hit = True

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGINT, self._old)


def train(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    train_ds: Dataset,
    test_ds: Dataset,
    *,
    adapt: Callable,
    run_dir: Path,
    epochs: int,
    batch_size: int,
    seed: int,
    device: torch.device,
    start_step: int = 0,
    history: list[dict] | None = None,
    progress: bool = True,
    log_every: int = 5,
    lr_schedule: str = "constant",
) -> list[dict]:
    """Train from ``start_step`` to the end; checkpoint every epoch and on Ctrl-C."""
    tqdm = require("tqdm", "the progress bar").tqdm
    base_lrs = [g["lr"] for g in opt.param_groups]
    history = list(history or [])
    n = len(train_ds)
    spe = steps_per_epoch(n, batch_size)
    total = epochs * spe
    step = start_step
    bar = tqdm(total=total, initial=step, disable=not progress, unit="step", dynamic_ncols=True)
    metrics = {}
    ema_loss = ema_acc = None
    model.train()
    with _SigintFlag() as sigint:
        while step < total:
            epoch, first = divmod(step, spe)
            batches = epoch_batches(n, batch_size, seed, epoch)[first:]
            loader = DataLoader(train_ds, batch_sampler=batches)
            for x, y in loader:
                x, y = adapt(x.to(device)), y.to(device)
                out = model(x)
                loss = F.cross_entropy(out, y)
                lv = loss.item()
                if not math.isfinite(lv):
                    raise FloatingPointError(f"loss became {lv} at step {step}; lower --lr")
                if lr_schedule == "cosine":  # a function of the step alone: resumes exactly
                    for g, lr in zip(opt.param_groups, base_lrs, strict=True):
                        g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                acc = float((out.argmax(1) == y).float().mean())
                ema_loss = lv if ema_loss is None else 0.9 * ema_loss + 0.1 * lv
                ema_acc = acc if ema_acc is None else 0.9 * ema_acc + 0.1 * acc
                rec = {"step": step, "loss": lv, "acc": acc}
                if step % log_every == 0 or step == total or step % spe == 0:
                    metrics = {
                        k: float(v)
                        for k, v in opt.metrics().items()
                        if isinstance(v, (int, float)) and k != "step"
                    }
                    rec.update(metrics)
                if step % spe == 0:
                    rec["test_acc"] = evaluate(model, test_ds, adapt, device)
                    model.train()
                history.append(rec)
                bar.update(1)
                bar.set_postfix(
                    loss=f"{ema_loss:.3f}",
                    acc=f"{ema_acc:.3f}",
                    sparsity=f"{metrics.get('group_sparsity', 0.0):.2f}",
                    flops=f"{metrics.get('flops_kept', 1.0):.2f}",
                    refresh=False,
                )
                if step % spe == 0 or sigint.hit:
                    path = save_checkpoint(run_dir, model, opt, step, history)
                if sigint.hit:
                    bar.close()
                    raise Interrupted(path, step)
    bar.close()
    if start_step < total or not (run_dir / "checkpoint.pt").exists():
        save_checkpoint(run_dir, model, opt, step, history)
    return history
