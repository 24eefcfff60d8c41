"""Accuracy vs FLOPs kept for ATO against dense, HESSO and HESSO-CRIC (same data, recipe, epochs),
with ATO's controller overhead and the slim/dense latency. Usage: [--quick] [--seeds N] ...
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F
from bench_optim_quality import acc, fmt, latency_ratio, load

import trainonce
from trainonce.optim import ATO, HESSO, HESSOCRIC
from trainonce.zoo.resnet import ResNet8

HERE = os.path.dirname(os.path.abspath(__file__))
METHODS = {"ATO": ATO, "HESSO": HESSO, "HESSO-CRIC": HESSOCRIC}


def split(data, seed: int = 0):
    """95% of the training split to train on, 5% held out for ``loss_fn`` (every method,
    dense included, trains on the same 95%)."""
    xtr, ytr, xte, yte = data
    perm = torch.randperm(len(ytr), generator=torch.Generator().manual_seed(seed))
    n = max(1, len(ytr) // 20)
    return (xtr[perm[n:]], ytr[perm[n:]], xte, yte), (xtr[perm[:n]], ytr[perm[:n]])


def train(data, held, method: str | None, keep: float, seed: int, epochs: int):
    """(model, slim model, FLOPs kept, seconds, controller seconds, controller calls)."""
    xtr, ytr = data[0], data[1]
    torch.manual_seed(seed)
    model = ResNet8(num_classes=10, in_channels=1, width=16)
    space = trainonce.analyze(model, xtr[:2])
    bs = 64
    total = epochs * ((len(ytr) + bs - 1) // bs)
    hp = dict(lr=0.1, momentum=0.9, weight_decay=5e-4)
    ctl = [0.0, 0]
    if method is None:
        opt = torch.optim.SGD(model.parameters(), **hp)
    else:
        kw = {}
        if METHODS[method].needs_loss_fn:
            kw["loss_fn"] = lambda: F.cross_entropy(model(held[0]), held[1])
        opt = METHODS[method](space, target_flops=keep, total_steps=total, **kw, **hp)
        if method == "ATO":  # time the controller updates (instrumentation of this script only)
            inner = opt._controller_step

            def timed() -> None:
                t0 = time.perf_counter()
                inner()
                ctl[0] += time.perf_counter() - t0
                ctl[1] += 1

            opt._controller_step = timed
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(ytr), generator=gen)
        for k in range(0, len(ytr), bs):
            idx = perm[k : k + bs]
            opt.zero_grad()
            F.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
            opt.step()
            sched.step()
    secs = time.perf_counter() - t0
    model.eval()
    if method is None:
        return model, model, 1.0, secs, 0.0, 0
    slim = trainonce.construct_subnet(model, space).eval()
    with torch.no_grad():
        same = torch.equal(slim(data[2]).argmax(1), model(data[2]).argmax(1))
    if not same:
        raise AssertionError(f"{method}: slim model predicts other classes than the trained one")
    kept = space.flops(~opt.zero) / space.flops()
    return model, slim, kept, secs, ctl[0], ctl[1]


QUICK = dict(seeds=1, epochs={"digits": 6, "mnist5k": 2}, keeps=(0.5, 0.3), datasets="digits")
FULL = dict(
    seeds=3,
    epochs={"digits": 20, "mnist5k": 15},
    keeps=(0.5, 0.3, 0.1, 0.05),
    datasets="digits,mnist5k",
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="digits, 1 seed, 6 epochs, 2 targets")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--datasets", default=None, help="comma list of digits, mnist5k")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--keeps", default=None, help="comma list of FLOPs shares to keep")
    ap.add_argument("--epochs", type=int, default=None)
    args = ap.parse_args()
    cfg = QUICK if args.quick else FULL
    torch.set_num_threads(args.threads)
    seeds = list(range(args.seeds or cfg["seeds"]))
    methods = args.methods.split(",")
    for ds in (args.datasets or cfg["datasets"]).split(","):
        t_start, load0 = time.time(), os.getloadavg()[0]
        data, held = split(load(ds))
        ep = args.epochs or cfg["epochs"][ds]
        dense = [train(data, held, None, 1.0, s, ep) for s in seeds]
        dense_acc = [acc(r[0], data) for r in dense]
        dense_secs = statistics.mean(r[3] for r in dense)
        lines = [
            f"# ATO vs HESSO / HESSO-CRIC on {ds} (built-in ResNet8, {len(data[1])} train + "
            f"{len(held[1])} held out / {len(data[3])} test, {ep} epochs, seeds "
            f"{', '.join(map(str, seeds))}, {args.threads} thread(s), torch {torch.__version__})",
            "",
            "SGD momentum 0.9, wd 5e-4, lr 0.1 cosine, batch 64, from scratch, no fine-tuning. "
            "Time: training wall time relative to dense in this run; controller: ms per "
            "controller update and its share of ATO's training time.",
            "",
            "| method | FLOPs target | FLOPs kept | accuracy % | dense % | Δ | time/dense | "
            "controller | slim/dense latency |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        keeps = [float(k) for k in args.keeps.split(",")] if args.keeps else cfg["keeps"]
        for keep in keeps:
            for name in methods:
                accs, kept, lat, secs, ctl_ms, ctl_share = [], [], [], [], [], []
                for s in seeds:
                    _, slim, k, t, c, n = train(data, held, name, keep, s, ep)
                    accs.append(acc(slim, data))
                    kept.append(k)
                    secs.append(t)
                    lat.append(latency_ratio(slim, dense[s][0], data[2][:256]))
                    if n:
                        ctl_ms.append(1000 * c / n)
                        ctl_share.append(c / t)
                ctl = (
                    f"{statistics.mean(ctl_ms):.1f} ms, {100 * statistics.mean(ctl_share):.0f}%"
                    if ctl_ms
                    else "-"
                )
                row = (
                    f"| {name} | {keep} | {statistics.mean(kept):.3f} | {fmt(accs)} | "
                    f"{fmt(dense_acc)} | {statistics.mean(accs) - statistics.mean(dense_acc):+.2f} "
                    f"| {statistics.mean(secs) / dense_secs:.2f}x | {ctl} | "
                    f"{statistics.median(lat):.2f}x |"
                )
                lines.append(row)
                print(ds, row, f"[{time.time() - t_start:.0f}s]", flush=True)
        lines += [
            "",
            f"Wall time {time.time() - t_start:.0f} s; load (1-min average) {load0:.1f} at "
            f"start, {os.getloadavg()[0]:.1f} at end.",
        ]
        text = "\n".join(lines) + "\n"
        print(text)
        custom = args.quick or args.keeps or args.epochs or args.seeds
        out = os.path.join(HERE, "results", f"ato_{ds}{'_quick' if custom else ''}.md")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        tmp = out + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, out)


if __name__ == "__main__":
    main()
