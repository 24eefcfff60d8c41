"""The dense baseline of ``trainonce run``: the same model, initial weights, data, batch order
and recipe (LR, schedule, momentum, weight decay, epochs) with the plain torch optimizer.

It lives in ``RUN_DIR/dense-baseline/`` with its own checkpoint, so Ctrl-C and ``--resume``
work for it as for the pruned run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

BASELINE_DIR = "dense-baseline"


@dataclass
class Baseline:
    """The trained dense baseline: test accuracy, training history, seconds spent training in
    this process (a resumed baseline counts this session only) and the step it resumed at."""

    accuracy: float
    history: list[dict]
    seconds: float
    resumed_at: int = 0


def dense_optimizer(cfg, params) -> torch.optim.Optimizer:
    """torch's own optimizer for ``cfg.variant``, with the hyper-parameters the pruning
    optimizer gets (its variants follow torch's single-tensor update, see optim/variant.py)."""
    if cfg.variant == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[cfg.variant]
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def train_baseline(job, cfg, run_dir: Path, progress: bool) -> Baseline:
    """Train (or finish training) the dense baseline; Interrupted on Ctrl-C, as the run."""
    from .checkpoint import CKPT_NAME, load_checkpoint, restore
    from .train import evaluate, make_scheduler, train

    out = run_dir / BASELINE_DIR
    out.mkdir(exist_ok=True)
    model = job.factory().to(job.device)  # the factory seeds: the run's initial weights
    opt = dense_optimizer(cfg, model.parameters())
    total = job.info["total_steps"]
    sched = make_scheduler(opt, cfg.lr_schedule, total)
    start, history = 0, []
    if (out / CKPT_NAME).exists():
        state = load_checkpoint(out)
        restore(state, model, opt, sched, out / CKPT_NAME)
        start, history = state["step"], state["history"]
    else:
        torch.manual_seed(cfg.seed)  # dropout etc. start from the seed, as a fresh run does
    if start < total:
        where = f"resuming at step {start}/{total}" if start else f"{total} steps"
        print(f"dense baseline ({type(opt).__name__}, same recipe, no pruning): {where} -> {out}")
    b = job.bundle
    t0 = time.perf_counter()
    history = train(model, opt, sched, b.train, b.test, adapt=job.adapt, run_dir=out,
                    epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed,
                    device=job.device, start_step=start, history=history, progress=progress)
    seconds = time.perf_counter() - t0
    cpu = torch.device("cpu")
    accuracy = evaluate(model.to(cpu), b.test, job.adapt, cpu)
    return Baseline(accuracy, history, seconds, start)
