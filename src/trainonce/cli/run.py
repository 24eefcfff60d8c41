"""``trainonce run``: train a model from scratch while pruning it, then slim, check and report.

Options are validated before any file is written; ``--resume RUN_DIR`` continues a stopped run.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Subset, default_collate

from ..optim.budgets import BUDGETS, GroupSparsity
from .latency import FLAGS as LATENCY_FLAGS
from .latency import (
    add_latency_arguments,
    check_latency_arguments,
    latency_table,
    save_latency_table,
)
from .run_space import analyze_for_target
from .setup import (
    DEFAULT_OPTIMIZER_BY_KEPT,
    DEFAULT_OPTIMIZER_SPARSITY,
    OPTIMIZERS,
    RunConfig,
    build_optimizer,
    check_device,
    check_output_dir,
    check_target,
    default_optimizer,
    default_optimizer_args,
    load_config,
    optimizer_class,
    save_config,
)

# Options that fix what a run computes: given with --resume they would be silently ignored.
TRAINING_OPTIONS = (
    "optimizer",
    "mode",
    "variant",
    "align",
    *(f"target_{b.name}" for b in BUDGETS),
    "epochs",
    "batch_size",
    "lr",
    "lr_schedule",
    "weight_decay",
    "seed",
    *LATENCY_FLAGS,
    "out",
)


def add_parser(sub) -> None:
    d = RunConfig()
    p = sub.add_parser(
        "run",
        help="train + prune a model in one run, then slim it and report",
        description=__doc__.splitlines()[0].replace("``", ""),
    )
    # Defaults are None so that --resume can tell a given option from a default one.
    p.add_argument(
        "--model",
        help=f"{d.model} (built-in, the default), a torchvision/timm name, or module:factory",
    )
    p.add_argument(
        "--data",
        help=f"{d.data} (default) | digits (built-in, offline) or module:function -> (train, test)",
    )
    p.add_argument(
        "--optimizer",
        choices=sorted(OPTIMIZERS),
        help="default: by target, "
        + ", ".join(f"{name} up to {upper:g} kept" for upper, name in DEFAULT_OPTIMIZER_BY_KEPT)
        + f", {DEFAULT_OPTIMIZER_SPARSITY} for --target-group-sparsity; h2spg with --mode "
        "erase/both",
    )
    p.add_argument(
        "--mode",
        choices=["prune", "erase", "both"],
        help="remove channels (prune), whole branches/sublayers (erase), or both "
        f"(default: {d.mode}; h2spg is made for erase/both)",
    )
    p.add_argument("--variant", choices=["sgd", "adam", "adamw"], help=f"default: {d.variant}")
    p.add_argument("--align", type=int, metavar="M",
                   help=f"keep a multiple of M channels (or all) in every channel group, so "
                   f"cut widths suit the kernels; 1: any width (default: {d.align})")
    t = p.add_mutually_exclusive_group()
    for b in BUDGETS:  # one flag per budget kind: --target-flops (the default, 0.5), ...
        flags = ["--target-" + b.name.replace("_", "-")]
        flags += ["--target-sparsity"] if b is GroupSparsity else []  # its name before 0.2
        default = " (default 0.5)" if b.name == d.target_kind else ""
        t.add_argument(*flags, dest=f"target_{b.name}", type=float, metavar="F",
                       help=b.meaning + default)
    p.add_argument("--epochs", type=int, help=f"default: {d.epochs}")
    p.add_argument("--batch-size", type=int, help=f"default: {d.batch_size}")
    p.add_argument("--lr", type=float, help=f"default: {d.lr}")
    p.add_argument(
        "--lr-schedule",
        choices=["cosine", "constant"],
        help=f"cosine decay to 0 over the run, or constant (default: {d.lr_schedule})",
    )
    p.add_argument("--weight-decay", type=float, help=f"default: {d.weight_decay}")
    p.add_argument("--seed", type=int, help=f"default: {d.seed}")
    p.add_argument("--device", help="cpu (default; on --resume the run's device) or cuda")
    add_latency_arguments(p, d)
    p.add_argument("--out", help="run directory (default runs/<model>-<data>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run saved in RUN_DIR")
    p.add_argument(
        "--trust-run-config",
        action="store_true",
        help="on --resume, call the module:function model/data recorded in RUN_DIR",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-onnx", action="store_true",
                   help="do not write model.onnx (its export and onnxruntime check take 3-15 s; "
                   "`trainonce export RUN_DIR --format onnx` writes it later)")
    p.add_argument(
        "--dense-baseline",
        action=argparse.BooleanOptionalAction,
        help="also train the dense model with the same recipe, for the report's accuracy row "
        "(default: on for the built-in model, off with --model)",
    )
    p.set_defaults(func=run)


# ----- which code may run -------------------------------------------------------------------
def runs_user_code(kind: str, spec: str) -> bool:
    """Whether building this --model / --data imports and calls a ``module:function``."""
    return ":" in spec and not (kind == "model" and spec.startswith("timm:"))


def check_recorded(kind: str, recorded: str, given: str | None, trust: bool) -> None:
    """Only call code named on this command line, never what a run directory's config says."""
    if given is not None and given != recorded:
        raise ValueError(
            f"--{kind} '{given}' differs from this run's {kind} '{recorded}'; "
            f"give the same value or leave --{kind} out"
        )
    if given is None and not trust and runs_user_code(kind, recorded):
        raise ValueError(
            f"this run's {kind} is '{recorded}', code named only by the run's config.json; "
            f"to run it, name it yourself: --{kind} {recorded} (or pass --trust-run-config)"
        )


# ----- configuration ------------------------------------------------------------------------
def _given(args: argparse.Namespace, name: str) -> Any:
    value = getattr(args, name)
    return getattr(RunConfig(), name) if value is None else value


def _config(args: argparse.Namespace) -> RunConfig:
    kind, target = RunConfig.target_kind, RunConfig.target
    for b in BUDGETS:
        v = getattr(args, f"target_{b.name}")
        if v is not None:
            kind, target = b.name, v
    check_target(kind, target)
    check_latency_arguments(args, kind)
    for name in ("align", "epochs", "batch_size", "latency_batch", "latency_threads"):
        if _given(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    if not (_given(args, "lr") > 0 and math.isfinite(_given(args, "lr"))):
        raise ValueError("--lr must be a positive finite number")
    model, data = _given(args, "model"), _given(args, "data")
    out = args.out or f"runs/{model.replace(':', '_')}-{data.replace(':', '_')}-" + (
        time.strftime("%Y%m%d-%H%M%S")
    )
    names = ("mode", "variant", "align", "epochs", "batch_size", "lr", "lr_schedule")
    names += ("weight_decay", "seed", "device", "latency_batch", "latency_threads")
    optimizer = args.optimizer or default_optimizer(kind, target, _given(args, "mode"))
    extra: dict[str, Any] = {"auto_align": args.align is None}
    if args.optimizer is None:  # the default optimizer's recipe for this budget
        extra["optimizer_args"] = default_optimizer_args(kind, target, optimizer)
    return RunConfig(
        model=model,
        data=data,
        target_kind=kind,
        target=target,
        latency_device=args.latency_device or "",
        out=out,
        optimizer=optimizer,
        **{n: _given(args, n) for n in names},
        extra=extra,
    )


def _resume_config(args: argparse.Namespace) -> tuple[RunConfig, Path, dict]:
    """The recorded settings of ``--resume RUN_DIR`` and its checkpoint; nothing is changed."""
    given = [n for n in TRAINING_OPTIONS if getattr(args, n) is not None]
    if given:
        names = ", ".join("--" + n.replace("_", "-") for n in given)
        raise ValueError(
            f"{names} cannot be combined with --resume: a resumed run keeps its recorded "
            "settings (start a new run with --out to change them)"
        )
    from .checkpoint import load_checkpoint

    run_dir = Path(args.resume)
    cfg, _ = load_config(run_dir)
    check_recorded("model", cfg.model, args.model, args.trust_run_config)
    check_recorded("data", cfg.data, args.data, args.trust_run_config)
    if args.device is not None:
        cfg.device = args.device
    check_output_dir(run_dir, resume=True)
    return cfg, run_dir, load_checkpoint(run_dir)


# ----- building the run ---------------------------------------------------------------------
@dataclass
class _Job:
    """Everything the training and the finish need, built from a RunConfig."""

    bundle: Any  # DataBundle
    model: nn.Module
    space: Any  # SearchSpace
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    adapt: Callable[[torch.Tensor], torch.Tensor]
    factory: Callable[[], nn.Module]
    device: torch.device
    info: dict[str, Any]
    latency_table: Any = None  # a latency target's LatencyTable


def _channel_adapter(cfg: RunConfig, built_channels: int, c_in: int) -> Callable:
    """Grey-scale data for a 3-channel model is repeated to 3 channels; other mismatches fail."""
    if built_channels != c_in and c_in != 1:
        raise ValueError(
            f"model '{cfg.model}' takes {built_channels}-channel input but data "
            f"'{cfg.data}' has {c_in} channels"
        )
    rep = built_channels if built_channels != c_in else 1

    def adapt(x: torch.Tensor) -> torch.Tensor:
        return x.repeat(1, rep, 1, 1) if rep > 1 else x

    return adapt


HELD_OUT_SHARE = 0.05  # of the training split, for optimizers that need a held-out loss


def split_held_out(ds, share: float, seed: int) -> tuple[Subset, Subset]:
    """A stratified, seeded split of ``ds`` into (train, held out): ``share`` of every class
    (at least one sample of each class with two or more) is held out.

    Not sklearn's ``train_test_split(stratify=...)``: it refuses a class with one sample and
    sizes the split globally, so a rare class can end up with nothing held out."""
    labels = torch.as_tensor([int(ds[i][1]) for i in range(len(ds))])
    gen = torch.Generator().manual_seed(seed)
    held = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        n = max(1, round(share * idx.numel())) if idx.numel() > 1 else 0
        held.append(idx[:n])
    held_idx = torch.sort(torch.cat(held)).values
    keep = torch.ones(len(ds), dtype=torch.bool)
    keep[held_idx] = False
    return Subset(ds, torch.nonzero(keep).flatten().tolist()), Subset(ds, held_idx.tolist())


def _build(cfg: RunConfig, device: torch.device, run_dir: Path) -> _Job:
    from ..data import load_data
    from ..zoo import build_model
    from .train import full_batches_per_epoch, make_scheduler

    bundle = load_data(cfg.data)
    held = None
    if optimizer_class(cfg.optimizer).needs_loss_fn:  # its loss must not see training data
        train, held = split_held_out(bundle.train, HELD_OUT_SHARE, cfg.seed)
        bundle = dataclasses.replace(bundle, train=train)
    c_in = bundle.input_shape[0]

    def factory():
        torch.manual_seed(cfg.seed)
        return build_model(cfg.model, bundle.num_classes, c_in)

    built = factory()
    model = built.model
    adapt = _channel_adapter(cfg, built.in_channels, c_in)
    example = adapt(bundle.train[0][0].unsqueeze(0))
    model.eval()
    space = analyze_for_target(cfg, model, example)
    total = cfg.epochs * full_batches_per_epoch(len(bundle.train), cfg.batch_size)
    model.to(device)
    loss_fn = None
    if held is not None:
        held_x, held_y = default_collate([held[i] for i in range(len(held))])

        def loss_fn() -> torch.Tensor:  # on the held-out share, never trained on
            return F.cross_entropy(model(adapt(held_x.to(device))), held_y.to(device))

    table = latency_table(cfg, space, run_dir) if cfg.target_kind == "latency" else None
    opt = build_optimizer(cfg, space, total, loss_fn, table)
    sched = make_scheduler(opt, cfg.lr_schedule, total)
    info = {
        "num_classes": bundle.num_classes,
        "input_shape": list(example.shape[1:]),
        "data_channels": c_in,
        "total_steps": total,
    }
    return _Job(bundle, model, space, opt, sched, adapt, lambda: factory().model, device, info,
                table)


# ----- the phases ---------------------------------------------------------------------------
def _train(job: _Job, cfg: RunConfig, run_dir: Path, state: dict | None, args) -> list[dict]:
    """Restore a checkpoint if resuming, record the config, train; Interrupted on Ctrl-C."""
    from .checkpoint import restore
    from .train import train

    total = job.info["total_steps"]
    start, history = 0, []
    if state is not None:
        restore(state, job.model, job.opt, job.sched, run_dir / "checkpoint.pt")
        start, history = state["step"], state["history"]
        print(f"resuming {run_dir} at step {start}/{total}")
    save_config(run_dir, cfg, job.info)
    b = job.bundle
    print(
        f"{cfg.model} on {cfg.data}: {len(b.train)} train / {len(b.test)} test, "
        f"{cfg.optimizer} {job.opt.target.describe()}, {total} steps -> "
        f"{run_dir}"
    )
    return train(
        job.model,
        job.opt,
        job.sched,
        b.train,
        b.test,
        adapt=job.adapt,
        run_dir=run_dir,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        device=job.device,
        start_step=start,
        history=history,
        progress=not args.no_progress,
    )


def _finish(job: _Job, cfg: RunConfig, run_dir: Path, history: list[dict], facts,
            onnx: bool = True) -> dict:
    """Slim, check, export and report; on failure only config + checkpoint stay."""
    from .finish import finish

    settings = {k: v for k, v in asdict(cfg).items() if k not in ("extra", "out")}
    b = job.bundle
    settings.update(train_size=len(b.train), test_size=len(b.test), steps=job.info["total_steps"])
    settings["dense_baseline"] = bool(cfg.extra.get("dense_baseline"))
    try:
        return finish(run_dir, settings, job.model, job.space, b, job.adapt, history, job.factory,
                      facts, latency_table=job.latency_table, onnx=onnx)
    except BaseException:
        shutil.rmtree(run_dir / ".staging", ignore_errors=True)
        raise


def _resume_command(cfg: RunConfig, run_dir: Path) -> str:
    """The command that resumes this run, naming its module:function model / data again."""
    words = ["trainonce run --resume", str(run_dir)]
    for kind in ("model", "data"):
        spec = getattr(cfg, kind)
        if runs_user_code(kind, spec):
            words.append(f"--{kind} {spec}")
    return " ".join(words)


def _print_summary(s: dict, run_dir: Path, t0: float) -> None:
    acc, fl, base = s["test_accuracy"], s["flops"], s["dense_baseline_accuracy"]
    vs = f"dense baseline {base:.2%} / " if base is not None else ""
    print(
        f"slim model: {s['params'][1]:,} params ({s['params'][1] / s['params'][0]:.1%}), "
        f"FLOPs kept {fl[1] / fl[0]:.1%}, test accuracy {vs}slim {acc[1]:.2%}"
    )
    print(f"report: {run_dir / 'report.html'}")
    print(f"done in {time.perf_counter() - t0:.1f} s")


def run(args: argparse.Namespace) -> int:
    from .baseline import train_baseline
    from .record import record_start, run_facts
    from .train import Interrupted

    t0 = time.perf_counter()
    if args.resume is not None:
        cfg, run_dir, state = _resume_config(args)
    else:
        cfg, state = _config(args), None
        run_dir = Path(cfg.out)
        check_output_dir(run_dir, resume=False)
    record_start(cfg, args)
    torch.manual_seed(cfg.seed)
    job = _build(cfg, check_device(cfg.device), run_dir)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    save_latency_table(job.latency_table, run_dir)
    try:
        t_train = time.perf_counter()
        history = _train(job, cfg, run_dir, state, args)
        facts = run_facts(cfg, job.opt, state, time.perf_counter() - t_train)
        if cfg.extra.get("dense_baseline"):
            facts.baseline = train_baseline(job, cfg, run_dir, not args.no_progress)
    except Interrupted as exc:
        print(f"\n{exc}\nresume with: {_resume_command(cfg, run_dir)}")
        return 130
    except BaseException:
        if created and not (run_dir / "checkpoint.pt").exists():
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing worth keeping yet
        raise
    _print_summary(_finish(job, cfg, run_dir, history, facts, not args.no_onnx), run_dir, t0)
    return 0
