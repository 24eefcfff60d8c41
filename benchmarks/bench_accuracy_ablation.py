"""Where the accuracy of a default ``trainonce run`` goes: one factor changed at a time against the
CLI's own recipe (resnet8, 5k MNIST, 8 epochs, lr 0.05 cosine, batch 64), 3 seeds.

Every run is the CLI's run (`trainonce.cli.run._build` + its training loop), with the variant's
change and a few probes: when ZIGs reach zero (first / last step, the LR then, steps left after
the last one), the kept width per channel group, and the slim accuracy both as trained and after
recalibrating BatchNorm's running statistics on the training set (same run, no extra training).
The dense baseline is `trainonce.cli.baseline.train_baseline` of the same seed and recipe
(computed once per seed and recipe in a process, and cached in ``--cache``).

Usage (one torch thread, one process at a time on this shared machine)::

    python benchmarks/bench_accuracy_ablation.py --target 0.5 --seeds 0,1,2 \
        --variants default,bn-recal-only,early,lr0.1 --out benchmarks/results/accuracy_ablation.md

A variant is a name below or ``name[key=value;...]`` with the keys of `VARIANTS`' values:
``optimizer`` (a registry name), ``start`` / ``length`` (pruning phase start and length as
shares of the run, passed as ``start_pruning_step`` / ``pruning_steps``), ``periods``,
``lr``, ``lr_schedule``, ``epochs``, ``align``, ``opt`` (a dict of other optimizer arguments).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import machine  # noqa: F401 (this machine's torchvision workaround)
import torch
from torch import nn

import trainonce.cli.run as cli_run
from trainonce.cli.baseline import train_baseline
from trainonce.cli.setup import RunConfig, default_optimizer, default_optimizer_args
from trainonce.cli.train import epoch_batches, evaluate, train
from trainonce.report.layer_rows import layer_rows

# Named variants: each changes one thing of the default run (empty: the CLI's default).
VARIANTS: dict[str, dict] = {
    "default": {},
    # pruning phase position / length (default: start 15%, length 45%, 10 periods)
    "early": {"start": 0.10, "length": 0.30},  # last zero at 40% of the run
    "short": {"start": 0.15, "length": 0.25},  # last zero at 40%
    "long": {"start": 0.10, "length": 0.60},  # last zero at 70%
    "late-start": {"start": 0.30, "length": 0.30},  # last zero at 60%, later first zero
    "periods1": {"periods": 1},
    "periods20": {"periods": 20},
    # HSPG/DHSPG: G_p zeroed period by period (smallest norms first) instead of all at the end
    "progressive": {"opt": {"progressive": True}},
    "progressive-early": {"opt": {"progressive": True}, "start": 0.10, "length": 0.30},
    # every channel group keeps at least `spread` x the uniform share (default 0.5)
    "spread1": {"opt": {"progressive": True, "spread": 1.0}, "start": 0.10, "length": 0.30},
    # LR (dense baseline trained with the same recipe)
    "lr0.1": {"lr": 0.1},
    "lr0.025": {"lr": 0.025},
    # method
    "hesso": {"optimizer": "hesso"},
    "hesso-cric": {"optimizer": "hesso-cric"},
    "dhspg": {"optimizer": "dhspg"},
    "hspg": {"optimizer": "hspg"},
    "ato": {"optimizer": "ato"},
    # width alignment (the CLI cuts every width to a multiple of 8)
    "align1": {"align": 1},
    "align4": {"align": 4},
}

DENSE_KEYS = ("lr", "lr_schedule", "epochs")  # the dense model does not see the others


def parse_variant(spec: str) -> tuple[str, dict]:
    name, _, rest = spec.partition("[")
    kw = dict(VARIANTS.get(name, {}))
    if name not in VARIANTS and not rest:
        raise SystemExit(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    for item in filter(None, rest.rstrip("]").split(";")):
        k, v = item.split("=", 1)
        try:
            kw[k.strip()] = ast.literal_eval(v.strip())
        except (ValueError, SyntaxError):
            kw[k.strip()] = v.strip()
    return spec, kw


@torch.no_grad()
def bn_recalibrated(model: nn.Module, ds, adapt, batch_size: int, seed: int) -> nn.Module:
    """A copy of ``model`` whose BatchNorm running statistics are re-estimated (cumulative
    average, no momentum) over one pass of the training set, weights unchanged."""
    m = copy.deepcopy(model)
    bns = [b for b in m.modules() if isinstance(b, nn.modules.batchnorm._BatchNorm)]
    for b in bns:
        b.reset_running_stats()
        b.momentum = None
    m.train()
    for idx in epoch_batches(len(ds), batch_size, seed, 0):
        x = torch.stack([ds[i][0] for i in idx])
        m(adapt(x))
    return m.eval()


@contextlib.contextmanager
def optimizer_args(kw: dict):
    """The CLI's `build_optimizer`, given the variant's schedule / optimizer arguments
    (``start`` / ``length`` as shares of the run's ``total_steps``)."""
    orig = cli_run.build_optimizer

    def build(cfg, space, total_steps, loss_fn=None, latency_table=None):
        extra = dict(kw.get("opt", {}))
        if "start" in kw:
            extra["start_pruning_step"] = max(0, round(kw["start"] * total_steps))
        if "length" in kw:
            extra["pruning_steps"] = max(1, round(kw["length"] * total_steps))
        if "periods" in kw:
            extra["pruning_periods"] = kw["periods"]
        if not extra:
            return orig(cfg, space, total_steps, loss_fn, latency_table)
        cls = cli_run.optimizer_class(cfg.optimizer)
        more = {"loss_fn": loss_fn} if cls.needs_loss_fn else {}
        return cls(space, lr=cfg.lr, variant=cfg.variant, momentum=cfg.momentum,
                   weight_decay=cfg.weight_decay, total_steps=total_steps,
                   **cfg.target_kwargs(), **more, **extra)

    cli_run.build_optimizer = build
    try:
        yield
    finally:
        cli_run.build_optimizer = orig


def config(target: float, seed: int, kw: dict, out: str) -> RunConfig:
    # the CLI's --align default (halved until the target is reachable) unless the variant sets it
    cfg = RunConfig(target=target, seed=seed, out=out, extra={"auto_align": "align" not in kw})
    cfg.optimizer = kw.get("optimizer") or default_optimizer("flops", target)
    if "optimizer" not in kw:  # the CLI's recipe for the default optimizer at this budget
        cfg.extra["optimizer_args"] = default_optimizer_args("flops", target, cfg.optimizer)
    for k in ("lr", "lr_schedule", "epochs", "align"):
        if k in kw:
            setattr(cfg, k, kw[k])
    return cfg


def one_run(target: float, seed: int, kw: dict) -> dict:
    """One ``trainonce run`` (pruned part) with the variant; its probes."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config(target, seed, kw, tmp)
        torch.manual_seed(cfg.seed)
        with optimizer_args(kw):
            job = cli_run._build(cfg, torch.device("cpu"), Path(tmp))
        opt, sched = job.opt, job.sched
        total = job.info["total_steps"]
        zeros, lrs = [], []
        step = opt.step

        def logged(*a, **k):  # instrumentation of this script only
            lrs.append(opt.param_groups[0]["lr"])
            r = step(*a, **k)
            zeros.append(int(opt.zero.sum()))
            return r

        opt.step = logged
        t0 = time.perf_counter()
        history = train(job.model, opt, sched, job.bundle.train, job.bundle.test,
                        adapt=job.adapt, run_dir=Path(tmp), epochs=cfg.epochs,
                        batch_size=cfg.batch_size, seed=cfg.seed, device=job.device,
                        progress=False)
        secs = time.perf_counter() - t0
        model = job.model.eval()
        slim = evaluate(model, job.bundle.test, job.adapt, job.device)
        recal = evaluate(bn_recalibrated(model, job.bundle.train, job.adapt, cfg.batch_size,
                                         cfg.seed), job.bundle.test, job.adapt, job.device)
        keep = ~opt.zero
        fin = zeros[-1]
        first = next((t for t, z in enumerate(zeros) if z > 0), None)
        last = next((t for t, z in enumerate(zeros) if z == fin), None) if fin else None
        widths = {r.name: f"{r.after}/{r.before}" for r in layer_rows(job.space, keep)}
        m = opt.metrics()
        epoch_acc = [round(100 * h["test_acc"], 1) for h in history if "test_acc" in h]
        return dict(
            slim=slim, recal=recal, secs=secs, total=total,
            flops_kept=job.space.flops(keep) / job.space.flops(),
            first_zero=first, last_zero=last,
            lr_first=lrs[first] if first is not None else None,
            lr_last=lrs[last] if last is not None else None,
            after_last=total - 1 - last if last is not None else None,
            widths=widths, epoch_acc=epoch_acc,
            ato_kept_at_freeze=m.get("controller_kept_at_freeze"),
            cfg=dict(optimizer=cfg.optimizer, lr=cfg.lr, epochs=cfg.epochs, align=cfg.align),
        )


def dense(target: float, seed: int, kw: dict, cache: dict) -> float:
    cfg = config(target, seed, kw, "")
    # as in the CLI, the baseline trains on the pruned run's training split (without the
    # held-out share when the optimizer takes one)
    held = cli_run.optimizer_class(cfg.optimizer).needs_loss_fn
    key = json.dumps([seed, cfg.data, cfg.model, held] + [getattr(cfg, k) for k in DENSE_KEYS])
    if key not in cache:
        with tempfile.TemporaryDirectory() as tmp:
            cfg.out = tmp
            torch.manual_seed(cfg.seed)
            job = cli_run._build(cfg, torch.device("cpu"), Path(tmp))
            cache[key] = train_baseline(job, cfg, Path(tmp), False).accuracy
    return cache[key]


def fmt_row(spec: str, target: float, runs: list[dict], dens: list[float]) -> str:
    d = [100 * (r["slim"] - b) for r, b in zip(runs, dens)]
    dr = [100 * (r["recal"] - b) for r, b in zip(runs, dens)]
    sd = statistics.stdev(d) if len(d) > 1 else 0.0
    first = [r["first_zero"] for r in runs]
    last = [r["last_zero"] for r in runs]
    lr_last = [r["lr_last"] for r in runs if r["lr_last"] is not None]
    after = [r["after_last"] for r in runs if r["after_last"] is not None]
    kept = statistics.mean(r["flops_kept"] for r in runs)
    secs = statistics.median(r["secs"] for r in runs)
    return (
        f"| {spec} | {target:g} | {runs[0]['cfg']['optimizer']} | "
        f"{statistics.mean(100 * b for b in dens):.2f} | "
        f"{statistics.mean(100 * r['slim'] for r in runs):.2f} | "
        f"**{statistics.mean(d):+.2f}** ± {sd:.2f} | {' / '.join(f'{x:+.1f}' for x in d)} | "
        f"{statistics.mean(dr):+.2f} | {kept:.1%} | {min(first)}-{max(first)} | "
        f"{min(last)}-{max(last)} of {runs[0]['total']} | "
        f"{statistics.mean(lr_last) if lr_last else float('nan'):.4f} | "
        f"{statistics.mean(after) if after else float('nan'):.0f} | {secs:.1f} |"
    )


HEADER = (
    "| variant | FLOPs target | optimizer | dense % | slim % | slim - dense (pts, mean ± sd) "
    "| per seed | with BN recal | FLOPs kept | first zero step | last zero step | LR at last "
    "zero | steps after last zero | train s (median) |\n" + "|---" * 14 + "|"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", type=float, default=0.5, help="FLOPs share to keep")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--variants", default="default")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(),
                                                    "trainonce_dense_cache.json"))
    ap.add_argument("--out", help="append the table (markdown) and per-run JSON here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    cache = json.loads(Path(args.cache).read_text()) if os.path.exists(args.cache) else {}
    lines, raw = [], []
    print(HEADER)
    for spec in split_specs(args.variants):
        spec, kw = parse_variant(spec)
        runs, dens = [], []
        for s in seeds:
            dens.append(dense(args.target, s, kw, cache))
            Path(args.cache).write_text(json.dumps(cache))
            r = one_run(args.target, s, kw)
            runs.append(r)
            raw.append(dict(variant=spec, target=args.target, seed=s, dense=dens[-1], **r))
            print(f"  {spec} seed {s}: dense {100 * dens[-1]:.1f} slim {100 * r['slim']:.1f} "
                  f"recal {100 * r['recal']:.1f} kept {r['flops_kept']:.1%} zeros "
                  f"{r['first_zero']}-{r['last_zero']} widths {r['widths']} epochs "
                  f"{r['epoch_acc']} ato-freeze {r['ato_kept_at_freeze']} {r['secs']:.0f}s",
                  flush=True)
        lines.append(fmt_row(spec, args.target, runs, dens))
        print(lines[-1], flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write(HEADER + "\n" + "\n".join(lines) + "\n\n")
        with open(os.path.splitext(args.out)[0] + ".jsonl", "a") as f:
            for r in raw:
                f.write(json.dumps(r) + "\n")


def split_specs(text: str) -> list[str]:
    """Comma-separated specs; commas inside [...] belong to the spec."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return out + [cur] if cur else out


if __name__ == "__main__":
    main()
