"""``trainonce run``: train a model from scratch while pruning it, then slim, check and report.

Options are validated before any file is written; ``--resume RUN_DIR`` continues a stopped run.
"""

from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

from .setup import (
    OPTIMIZERS,
    RunConfig,
    build_optimizer,
    check_device,
    check_output_dir,
    check_target,
    load_config,
    save_config,
)


def add_parser(sub) -> None:
    d = RunConfig()
    p = sub.add_parser(
        "run",
        help="train + prune a model in one run, then slim it and report",
        description=__doc__.splitlines()[0].replace("``", ""),
    )
    p.add_argument(
        "--model",
        default=d.model,
        help="resnet8 (built-in, the default), a torchvision/timm name, or module:factory",
    )
    p.add_argument(
        "--data",
        default=d.data,
        help="mnist (default) | digits (built-in, offline) or module:function -> (train, test)",
    )
    p.add_argument(
        "--optimizer", default=d.optimizer, choices=sorted(OPTIMIZERS), help="default: hesso"
    )
    p.add_argument(
        "--variant",
        default=d.variant,
        choices=["sgd", "adam", "adamw"],
        help="default: %(default)s",
    )
    t = p.add_mutually_exclusive_group()
    t.add_argument("--target-flops", type=float, metavar="F", help="FLOPs kept (default 0.5)")
    t.add_argument("--target-params", type=float, metavar="F", help="parameters kept")
    t.add_argument("--target-sparsity", type=float, metavar="F", help="share of groups removed")
    p.add_argument("--epochs", type=int, default=d.epochs, help="default: %(default)s")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="default: %(default)s")
    p.add_argument("--lr", type=float, default=d.lr, help="default: %(default)s")
    p.add_argument(
        "--lr-schedule",
        default=d.lr_schedule,
        choices=["cosine", "constant"],
        help="cosine decay to 0 over the run, or constant (default: %(default)s)",
    )
    p.add_argument(
        "--weight-decay", type=float, default=d.weight_decay, help="default: %(default)s"
    )
    p.add_argument("--seed", type=int, default=d.seed, help="default: %(default)s")
    p.add_argument("--device", default=d.device, help="cpu (default) or cuda")
    p.add_argument("--out", help="run directory (default runs/<model>-<data>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run saved in RUN_DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _config(args: argparse.Namespace) -> RunConfig:
    kind, target = "flops", 0.5
    for k in ("flops", "params", "sparsity"):
        v = getattr(args, f"target_{k}")
        if v is not None:
            kind, target = k, v
    check_target(kind, target)
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    if args.lr <= 0:
        raise ValueError("--lr must be positive")
    out = args.out or f"runs/{args.model.replace(':', '_')}-{args.data.replace(':', '_')}-" + (
        time.strftime("%Y%m%d-%H%M%S")
    )
    return RunConfig(
        model=args.model,
        data=args.data,
        optimizer=args.optimizer,
        variant=args.variant,
        target_kind=kind,
        target=target,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        weight_decay=args.weight_decay,
        seed=args.seed,
        device=args.device,
        out=out,
    )


def run(args: argparse.Namespace) -> int:
    import trainonce

    from ..data import load_data
    from ..zoo import build_model
    from .checkpoint import load_checkpoint, restore
    from .finish import finish
    from .train import Interrupted, steps_per_epoch, train

    t0 = time.perf_counter()
    resume = args.resume is not None
    if resume:
        run_dir = Path(args.resume)
        cfg, _ = load_config(run_dir)
        cfg.device = args.device
        check_output_dir(run_dir, resume=True)
        state = load_checkpoint(run_dir)
    else:
        cfg = _config(args)
        run_dir = Path(cfg.out)
        check_output_dir(run_dir, resume=False)
    device = check_device(cfg.device)
    torch.manual_seed(cfg.seed)

    bundle = load_data(cfg.data)
    c_in = bundle.input_shape[0]

    def factory():
        torch.manual_seed(cfg.seed)
        return build_model(cfg.model, bundle.num_classes, c_in)

    built = factory()
    model = built.model
    if built.in_channels != c_in and c_in != 1:
        raise ValueError(
            f"model '{cfg.model}' takes {built.in_channels}-channel input but data "
            f"'{cfg.data}' has {c_in} channels"
        )
    rep = built.in_channels if built.in_channels != c_in else 1

    def adapt(x: torch.Tensor) -> torch.Tensor:
        return x.repeat(1, rep, 1, 1) if rep > 1 else x

    example = adapt(bundle.train[0][0].unsqueeze(0))
    model.eval()
    space = trainonce.analyze(model, (example,))
    total = cfg.epochs * steps_per_epoch(len(bundle.train), cfg.batch_size)
    model.to(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    pick = torch.randperm(len(bundle.train), generator=gen)[:256].tolist()
    cric_x, cric_y = default_collate([bundle.train[i] for i in pick])

    def loss_fn() -> torch.Tensor:  # for HESSO-CRIC: the loss on 256 fixed training samples
        return F.cross_entropy(model(adapt(cric_x.to(device))), cric_y.to(device))

    opt = build_optimizer(cfg, space, total, loss_fn)
    start, history = 0, []
    if resume:
        restore(state, model, opt, run_dir / "checkpoint.pt")
        start, history = state["step"], state["history"]
        print(f"resuming {run_dir} at step {start}/{total}")
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    info = {
        "num_classes": bundle.num_classes,
        "input_shape": list(example.shape[1:]),
        "data_channels": c_in,
        "total_steps": total,
    }
    try:
        save_config(run_dir, cfg, info)
        print(
            f"{cfg.model} on {cfg.data}: {len(bundle.train)} train / {len(bundle.test)} test, "
            f"{cfg.optimizer} keeping {cfg.target:g} of {cfg.target_kind}, {total} steps -> "
            f"{run_dir}"
        )
        history = train(
            model,
            opt,
            bundle.train,
            bundle.test,
            adapt=adapt,
            run_dir=run_dir,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            seed=cfg.seed,
            device=device,
            start_step=start,
            history=history,
            progress=not args.no_progress,
            lr_schedule=cfg.lr_schedule,
        )
    except Interrupted as exc:
        print(f"\n{exc}\nresume with: trainonce run --resume {run_dir}")
        return 130
    except BaseException:
        if created and not (run_dir / "checkpoint.pt").exists():
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing worth keeping yet
        raise
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("extra", "out")}
    settings.update(train_size=len(bundle.train), test_size=len(bundle.test), steps=total)
    try:
        s = finish(run_dir, settings, model, space, bundle, adapt, history, lambda: factory().model)
    except BaseException:
        shutil.rmtree(run_dir / ".staging", ignore_errors=True)  # keep only config + checkpoint
        raise
    acc, fl = s["test_accuracy"], s["flops"]
    print(
        f"slim model: {s['params'][1]:,} params ({s['params'][1] / s['params'][0]:.1%}), "
        f"FLOPs kept {fl[1] / fl[0]:.1%}, test accuracy dense {acc[0]:.2%} / slim {acc[1]:.2%}"
    )
    print(f"report: {run_dir / 'report.html'}")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0
