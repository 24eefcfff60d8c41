"""The training loop of ``trainonce run``: deterministic batches, a tqdm bar, Ctrl-C checkpoints.

Batch order depends only on (seed, epoch) and the LR comes from a checkpointed torch scheduler,
so a resumed run continues bit for bit where the uninterrupted one would be.
"""

from __future__ import annotations

import math
import signal
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, Dataset

from ..data.optional import require
from .checkpoint import save_checkpoint

LR_SCHEDULES = ("cosine", "constant")


class Interrupted(Exception):
    """Raised after Ctrl-C once a consistent checkpoint has been written."""

    def __init__(self, path: Path, step: int) -> None:
        super().__init__(f"interrupted at step {step}; checkpoint saved to {path}")
        self.path, self.step = path, step


def full_batches_per_epoch(n: int, batch_size: int) -> int:
    """Steps per epoch of ``trainonce run``: the full batches of ``n`` samples (a short last
    batch is dropped, so every step sees ``batch_size`` samples); one batch of all ``n`` when
    ``n < batch_size``. Not `trainonce.testing.minibatches_per_epoch`, which keeps it."""
    return max(1, n // batch_size) if n >= batch_size else 1


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=gen).tolist()
    k = full_batches_per_epoch(n, batch_size)
    return [perm[i * batch_size : (i + 1) * batch_size] for i in range(k)]


def make_scheduler(opt: torch.optim.Optimizer, kind: str, total: int) -> LambdaLR:
    """torch's own LambdaLR: ``cosine`` decays the LR to 0 over ``total`` steps (a closed form
    in the step), ``constant`` keeps it. Its ``state_dict`` goes into every checkpoint."""
    if kind not in LR_SCHEDULES:
        raise ValueError(f"unknown LR schedule '{kind}': use one of {', '.join(LR_SCHEDULES)}")
    if kind == "constant":
        return LambdaLR(opt, lambda step: 1.0)
    return LambdaLR(opt, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))


def _loader(ds: Dataset, **kw) -> DataLoader:
    # Its own generator: a DataLoader draws a seed per iterator, and drawing it from the global
    # RNG would make a resumed run (one extra iterator) see other dropout masks.
    return DataLoader(ds, generator=torch.Generator(), **kw)


@torch.no_grad()
def evaluate(model: nn.Module, ds: Dataset, adapt: Callable, device, batch_size: int = 256):
    was_training = model.training
    model.eval()
    correct = total = 0
    for x, y in _loader(ds, batch_size=batch_size):
        out = model(adapt(x.to(device)))
        correct += int((out.argmax(1) == y.to(device)).sum())
        total += y.numel()
    model.train(was_training)
    return correct / max(total, 1)


def check_finite(model: nn.Module, step: int, opt=None) -> None:
    """Refuse diverged training: a NaN model must not be checkpointed, slimmed or reported, and
    neither must one whose optimizer skipped many steps for non-finite gradients (the
    optimizers skip such a step rather than write NaN; a few are tolerated, as with AMP)."""
    for name, t in model.state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise FloatingPointError(
                f"training diverged: {name} holds non-finite values after step {step}; lower --lr"
            )
    skipped = int(opt.metrics().get("skipped_steps", 0)) if hasattr(opt, "metrics") else 0
    if skipped and (2 * skipped > step or skipped >= max(10, 0.1 * step)):
        raise FloatingPointError(
            f"training diverged: {skipped} of {step} steps had non-finite gradients and were "
            "skipped; lower --lr or check the model for NaN/inf")


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


# the metrics the bar shows, by their short names (latency_kept: under a latency target only)
SHOWN = {"group_sparsity": "sparsity", "flops_kept": "flops", "latency_kept": "latency"}


class _Bar:
    """The tqdm bar with smoothed loss / accuracy and the latest sparsity figures."""

    def __init__(self, total: int, start: int, progress: bool) -> None:
        tqdm = require("tqdm", "the progress bar").tqdm
        self.bar = tqdm(
            total=total, initial=start, disable=not progress, unit="step", dynamic_ncols=True
        )
        self.loss = self.acc = None
        self.metrics: dict[str, float] = {}

    def update(self, rec: dict) -> None:
        lv, acc = rec["loss"], rec["acc"]
        self.loss = lv if self.loss is None else 0.9 * self.loss + 0.1 * lv
        self.acc = acc if self.acc is None else 0.9 * self.acc + 0.1 * acc
        self.metrics.update({k: v for k, v in rec.items() if k in SHOWN})
        self.bar.update(1)
        shown = {name: f"{self.metrics[k]:.2f}" for k, name in SHOWN.items() if k in self.metrics}
        self.bar.set_postfix(loss=f"{self.loss:.3f}", acc=f"{self.acc:.3f}", **shown,
                             refresh=False)

    def close(self) -> None:
        self.bar.close()


def _train_step(model, opt, sched, x, y, step: int) -> dict:
    """One optimizer step; the scheduler then sets the LR of the next step."""
    out = model(x)
    loss = F.cross_entropy(out, y)
    lv = loss.item()
    if not math.isfinite(lv):
        raise FloatingPointError(f"loss became {lv} at step {step}; lower --lr")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    return {"step": step + 1, "loss": lv, "acc": float((out.argmax(1) == y).float().mean())}


def _optimizer_metrics(opt) -> dict[str, float]:
    if not hasattr(opt, "metrics"):  # a plain torch optimizer (the dense baseline)
        return {}
    return {
        k: float(v) for k, v in opt.metrics().items() if isinstance(v, (int, float)) and k != "step"
    }


def train(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    sched: LambdaLR,
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
) -> list[dict]:
    """Train from ``start_step`` to the end; checkpoint every epoch and on Ctrl-C."""
    history = list(history or [])
    n = len(train_ds)
    spe = full_batches_per_epoch(n, batch_size)
    total = epochs * spe
    step = start_step
    bar = _Bar(total, step, progress)
    model.train()

    def checkpoint() -> Path:
        check_finite(model, step, opt)
        return save_checkpoint(run_dir, model, opt, sched, step, history)

    with _SigintFlag() as sigint:
        while step < total:
            epoch, first = divmod(step, spe)
            batches = epoch_batches(n, batch_size, seed, epoch)[first:]
            for x, y in _loader(train_ds, batch_sampler=batches):
                rec = _train_step(model, opt, sched, adapt(x.to(device)), y.to(device), step)
                step += 1
                if step % log_every == 0 or step == total or step % spe == 0:
                    rec.update(_optimizer_metrics(opt))
                if step % spe == 0:
                    rec["test_acc"] = evaluate(model, test_ds, adapt, device)
                history.append(rec)
                bar.update(rec)
                if step % spe == 0 or sigint.hit:
                    path = checkpoint()
                if sigint.hit:
                    bar.close()
                    raise Interrupted(path, step)
    bar.close()
    if start_step < total or not (run_dir / "checkpoint.pt").exists():
        checkpoint()
    check_finite(model, step, opt)
    return history
