"""Accuracy vs FLOPs kept: dense, ATO, HESSO, HESSO-CRIC, HSPG, Torch-Pruning side by side (same
data, recipe, epochs), plus ATO's per-step overhead and slim/dense latency. Usage: see --help.
"""

from __future__ import annotations

import argparse
import ast
import os
import statistics
import time

import torch
import torch.nn.functional as F
from bench_optim_quality import acc, fmt, latency_ratio, load, train_tp

import trainonce
from trainonce.optim import ATO, HESSO, HESSOCRIC, HSPG
from trainonce.testing import fit, minibatches, minibatches_per_epoch
from trainonce.zoo.resnet import ResNet8

HERE = os.path.dirname(os.path.abspath(__file__))
METHODS = {"ATO": ATO, "HESSO": HESSO, "HESSO-CRIC": HESSOCRIC, "HSPG": HSPG}
HP = dict(lr=0.1, momentum=0.9, weight_decay=5e-4)
BS = 64


def parse_method(spec: str) -> tuple[str, dict]:
    """``NAME`` or ``NAME[key=value;...]`` (values are Python literals), e.g.
    ``ATO[controller_every=4]``: a method with non-default arguments."""
    name, _, rest = spec.partition("[")
    kw = {}
    for item in filter(None, rest.rstrip("]").split(";")):
        k, v = item.split("=", 1)
        kw[k.strip()] = ast.literal_eval(v.strip())
    if name not in METHODS and name != "Torch-Pruning":
        raise SystemExit(f"unknown method {name!r}")
    return name, kw


def split(data, seed: int = 0):
    """95% of the training split to train on, 5% held out for ``loss_fn`` (every method,
    dense included, trains on the same 95%)."""
    xtr, ytr, xte, yte = data
    perm = torch.randperm(len(ytr), generator=torch.Generator().manual_seed(seed))
    n = max(1, len(ytr) // 20)
    return (xtr[perm[n:]], ytr[perm[n:]], xte, yte), (xtr[perm[:n]], ytr[perm[:n]])


def build(data, held, name: str | None, kw: dict, keep: float, seed: int, total: int):
    """(model, space, optimizer) for one run; ``name`` None is dense SGD."""
    torch.manual_seed(seed)
    model = ResNet8(num_classes=10, in_channels=1, width=16)
    space = trainonce.analyze(model, data[0][:2])
    if name is None:
        return model, space, torch.optim.SGD(model.parameters(), **HP)
    for k in ("start_pruning_step", "pruning_steps"):  # a float below 1: a share of the run
        if isinstance(kw.get(k), float) and kw[k] < 1:
            kw = dict(kw, **{k: max(1, round(kw[k] * total))})
    if METHODS[name].needs_loss_fn:
        kw = dict(kw, loss_fn=lambda: F.cross_entropy(model(held[0]), held[1]))
    return model, space, METHODS[name](space, target_flops=keep, total_steps=total, **kw, **HP)


def train(data, held, name: str | None, kw: dict, keep: float, seed: int, epochs: int):
    """(slim or dense model, FLOPs kept, training seconds)."""
    xtr, ytr = data[0], data[1]
    if name == "Torch-Pruning":
        t0 = time.perf_counter()
        slim, kept = train_tp(data, keep, seed, epochs, 16)
        return slim, kept, time.perf_counter() - t0
    total = epochs * minibatches_per_epoch(len(ytr), BS)
    model, space, opt = build(data, held, name, kw, keep, seed, total)
    t0 = time.perf_counter()
    fit(model, opt, xtr, ytr, epochs, seed=seed, batch_size=BS)
    secs = time.perf_counter() - t0
    if name is None:
        return model, 1.0, secs
    slim = trainonce.construct_subnet(model, space).eval()
    with torch.no_grad():
        if not torch.equal(slim(data[2]).argmax(1), model(data[2]).argmax(1)):
            raise AssertionError(f"{name}: slim model predicts other classes than the trained one")
    return slim, space.flops(~opt.zero) / space.flops(), secs


def overhead(data, held, kw: dict, keep: float, epochs: int, window: int = 120) -> dict:
    """ATO vs HESSO training-step time (forward, backward, step), interleaved step by step on
    identical models over the first ``window`` steps of ATO's controller phase."""
    xtr, ytr = data[0], data[1]
    total = epochs * minibatches_per_epoch(len(ytr), BS)
    runs = [build(data, held, n, k, keep, 0, total) for n, k in (("ATO", kw), ("HESSO", {}))]
    ato = runs[0][2]
    ctl = [0.0, 0]
    inner = ato._controller_step

    def timed(t: int) -> None:  # instrumentation of this script only
        t0 = time.perf_counter()
        inner(t)
        ctl[0] += time.perf_counter() - t0
        ctl[1] += 1

    ato._controller_step = timed
    times: list[list[float]] = [[], []]
    stop = min(ato.schedule.end, ato.schedule.start + window)
    for t, idx in enumerate(minibatches(len(ytr), epochs, 0, BS)):
        if t >= stop:
            break
        for (model, _, opt), rec in zip(runs, times):
            model.train()
            t0 = time.perf_counter()
            opt.zero_grad()
            F.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
            opt.step()
            if t >= ato.schedule.start:
                rec.append(time.perf_counter() - t0)
    a, h = (1000 * statistics.mean(r) for r in times)
    return dict(
        ato_ms=a,
        hesso_ms=h,
        ctl_ms=1000 * ctl[0] / max(1, ctl[1]),
        ctl_calls=ctl[1],
        every=ato.controller_every,
        steps=len(times[0]),
    )


QUICK = dict(seeds=1, epochs={"digits": 6, "mnist5k": 4}, keeps="0.1,0.05", datasets="mnist5k")
FULL = dict(
    seeds=3,
    epochs={"digits": 20, "mnist5k": 30},
    keeps="0.1,0.05,0.5,0.3",  # the goal budgets first
    datasets="mnist5k,digits",
)


def table(ds: str, args, cfg, seeds, specs, lines: list[str], save) -> None:
    """Appends the dataset's rows to ``lines``, calling ``save()`` after each (a long run that
    is stopped keeps what it measured)."""
    t_start = time.time()
    data, held = split(load(ds))
    ep = args.epochs or cfg["epochs"][ds]
    dense = [train(data, held, None, {}, 1.0, s, ep) for s in seeds]
    dense_acc = [acc(r[0], data) for r in dense]
    dense_secs = statistics.mean(r[2] for r in dense)
    lines += [
        f"## {ds} ({len(data[1])} train + {len(held[1])} held out / {len(data[3])} test, {ep} "
        f"epochs, seeds {', '.join(map(str, seeds))})",
        "",
        f"Dense: {fmt(dense_acc)} %, {dense_secs:.1f} s per run.",
        "",
        "| method | FLOPs target | FLOPs kept | accuracy % | Δ vs dense | time/dense | "
        "slim/dense latency |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for keep in [float(k) for k in (args.keeps or cfg["keeps"]).split(",")]:
        for spec in specs:
            name, kw = parse_method(spec)
            accs, kept, lat, secs = [], [], [], []
            for s in seeds:
                slim, k, t = train(data, held, name, kw, keep, s, ep)
                accs.append(acc(slim, data))
                kept.append(k)
                secs.append(t)
                lat.append(latency_ratio(slim, dense[s][0], data[2][:256]))
            delta = statistics.mean(accs) - statistics.mean(dense_acc)
            row = (
                f"| {spec} | {keep} | {statistics.mean(kept):.3f} | {fmt(accs)} | {delta:+.2f} "
                f"| {statistics.mean(secs) / dense_secs:.2f}x | {statistics.median(lat):.2f}x |"
            )
            lines.append(row)
            save()
            print(ds, row, f"[{time.time() - t_start:.0f}s]", flush=True)
    lines.append("")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="mnist5k, 1 seed, 4 epochs, 0.1/0.05")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--datasets", default=None, help="comma list of mnist5k, digits")
    ap.add_argument(
        "--methods",
        default="ATO,HESSO,HESSO-CRIC,HSPG,Torch-Pruning",
        help="comma list of NAME or NAME[key=value;...]",
    )
    ap.add_argument("--keeps", default=None, help="comma list of FLOPs shares to keep")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--no-overhead", action="store_true")
    ap.add_argument("--out", default=None, help="default results/ato.md (ato_quick.md if custom)")
    args = ap.parse_args()
    cfg = QUICK if args.quick else FULL
    torch.set_num_threads(args.threads)
    seeds = list(range(args.seeds or cfg["seeds"]))
    specs = args.methods.split(",")
    t0, load0 = time.time(), os.getloadavg()[0]
    lines = [
        "# ATO and the other pruners: accuracy vs FLOPs kept (from scratch, no fine-tuning)",
        "",
        f"Built-in ResNet8 (width 16), SGD momentum 0.9, wd 5e-4, lr 0.1 cosine, batch {BS}, "
        "same epochs for all; ATO and HESSO-CRIC take their loss_fn on the 5% held out (every "
        "method trains on the same 95%). Test accuracy mean ± std over seeds; FLOPs kept exact "
        "(from the space; Torch-Pruning: its MAC count); time: training wall time / dense in "
        "this run; latency: slim/dense CPU forward, batch 256, median of interleaved rounds. "
        "Torch-Pruning: GroupNormPruner sparse training 60% of the epochs, pruned to the budget, "
        f"fine-tuned 40%. {args.threads} thread(s), torch {torch.__version__}.",
        "",
    ]
    custom = args.quick or args.keeps or args.epochs or args.seeds or args.datasets
    out = args.out or os.path.join(HERE, "results", "ato_quick.md" if custom else "ato.md")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)

    def save(final: bool = False) -> None:
        tail = [
            f"Wall time {time.time() - t0:.0f} s{'' if final else ' so far (still running)'}; "
            f"load (1-min average, 2 shared cores) {load0:.1f} at start, "
            f"{os.getloadavg()[0]:.1f} now. Command: python benchmarks/bench_ato.py "
            + " ".join(os.sys.argv[1:])
        ]
        with open(out + ".tmp", "w") as f:
            f.write("\n".join(lines + tail) + "\n")
        os.replace(out + ".tmp", out)

    if not args.no_overhead:  # first: short, and measured before the long table
        ds = (args.datasets or cfg["datasets"]).split(",")[0]
        data, held = split(load(ds))
        ato_kw = next((parse_method(s)[1] for s in specs if s.startswith("ATO")), {})
        for label, kw in (("default", ato_kw), ("every step", dict(ato_kw, controller_every=1))):
            o = overhead(data, held, kw, 0.1, args.epochs or cfg["epochs"][ds])
            lines += [
                f"Overhead, controller {label} ({ds}, target 0.1, {o['steps']} steps of ATO's "
                f"controller phase, interleaved step by step with HESSO on an identical model): "
                f"ATO step {o['ato_ms']:.1f} ms vs HESSO step {o['hesso_ms']:.1f} ms "
                f"({o['ato_ms'] / o['hesso_ms']:.2f}x); controller update {o['ctl_ms']:.1f} ms, "
                f"every {o['every']} step(s) ({o['ctl_calls']} updates).",
                "",
            ]
            print(lines[-2], flush=True)
        save()
    for ds in (args.datasets or cfg["datasets"]).split(","):
        table(ds, args, cfg, seeds, specs, lines, save)
    save(final=True)
    print(open(out).read())


if __name__ == "__main__":
    main()
