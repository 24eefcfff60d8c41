"""Latency of slim models on this CPU, measured side by side (torch.utils.benchmark, interleaved
rounds in one process): what FLOPs turn into, by alignment, against Torch-Pruning.

(a) FLOPs kept 0.5 (the same random saliency for every alignment): slim latency with align 1,
    8 and 16, and Torch-Pruning (magnitude, uniform ratio, round_to=8) at the same FLOPs;
(b) speed-up / FLOPs-reduction of each (1.0: the slim model is as much faster as it is cheaper);
(c) with --latency: target_latency 0.5 and 0.3 (align 8, the table measured here): the measured
    slim/dense latency against the target and the table's prediction against the measurement.
Usage: [--models resnet50,mobilenet_v2,vit_b_16,resnet8] [--batches 1,16] [--threads 2]
       [--rounds 6] [--latency] [--out benchmarks/results/latency_align.md]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time

import machine  # noqa: F401  (this machine's torchvision quirk: see machine.py)
import torch

import trainonce  # noqa: E402
from trainonce.optim.budgets import Flops, Latency  # noqa: E402
from trainonce.optim.targets import Pool  # noqa: E402
from trainonce.report.latency import compare_latency  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ALIGNS = (1, 8, 16)


def build(name: str):
    """(model, example input of batch 1)."""
    if name == "resnet8":
        from trainonce.zoo.resnet import ResNet8

        return ResNet8(num_classes=10, in_channels=1).eval(), torch.randn(1, 1, 28, 28)
    import torchvision

    return getattr(torchvision.models, name)(num_classes=1000).eval(), torch.randn(1, 3, 224, 224)


def slim_at_flops(model, x, keep: float, align: int, seed: int = 0):
    """(slim model, FLOPs kept): ``keep`` of the FLOPs by trainonce's selection with a fixed
    random saliency (no training: what is measured is the widths' speed, not accuracy)."""
    model = copy.deepcopy(model)
    space = trainonce.analyze(model, x, align=align)
    score = torch.rand(space.num_zigs, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(seed))
    chosen = Flops(keep).select(space, keep, score, torch.zeros(space.num_zigs, dtype=torch.bool))
    space.set_zero(chosen)
    slim = trainonce.construct_subnet(model, space).eval()  # the check picks eager or program
    return slim, space.flops(~chosen) / space.flops()


def tp_at_flops(model, x, keep: float, round_to: int = 8):
    """(Torch-Pruning model, FLOPs kept): one uniform magnitude ratio, ``round_to`` channels,
    searched (bisection) to keep ``keep`` of the FLOPs; the classifier is left whole."""
    import torch_pruning as tp

    dense = tp.utils.count_ops_and_params(model, x)[0]
    ignored = [m for m in model.modules() if isinstance(m, torch.nn.Linear)
               and m.out_features in (10, 1000)]

    def pruned(ratio: float):
        m = copy.deepcopy(model)
        ign = [dict(m.named_modules())[n] for n, mod in model.named_modules() if mod in ignored]
        tp.pruner.MagnitudePruner(m, x, importance=tp.importance.MagnitudeImportance(p=2),
                                  pruning_ratio=ratio, ignored_layers=ign,
                                  round_to=round_to).step()
        return m, tp.utils.count_ops_and_params(m, x)[0] / dense

    lo, hi = 0.0, 0.9
    best = pruned(0.3)
    for _ in range(12):
        mid = (lo + hi) / 2
        m, kept = pruned(mid)
        if abs(kept - keep) < abs(best[1] - keep):
            best = (m, kept)
        lo, hi = (mid, hi) if kept > keep else (lo, mid)
    return best[0].eval(), best[1]


def run(name: str, batches: list[int], threads: int, rounds: int, lines: list[str]) -> None:
    model, x = build(name)
    t0 = time.time()
    variants, kept = {}, {}
    for align in ALIGNS:
        variants[f"align {align}"], kept[f"align {align}"] = slim_at_flops(model, x, 0.5, align)
    try:
        variants["TP round_to=8"], kept["TP round_to=8"] = tp_at_flops(model, x, 0.5)
    except Exception as exc:  # noqa: BLE001 - a peer that cannot prune this model is a row
        lines.append(f"| {name} | | Torch-Pruning failed: {type(exc).__name__}: {exc} |")
    print(f"{name}: slim models built in {time.time() - t0:.0f} s", flush=True)
    for b in batches:
        xb = torch.randn((b,) + tuple(x.shape[1:]))
        t = compare_latency({"dense": model, **variants}, xb, num_threads=threads, rounds=rounds)
        base = t["dense"].median
        lines.append(f"| {name} | {b} | dense | 1.000 | {t['dense'].text()} | 1.00 | 1.00 |")
        for k in variants:
            speed = base / t[k].median
            lines.append(f"| {name} | {b} | {k} | {kept[k]:.3f} | {t[k].text()} | {speed:.2f} | "
                         f"{speed * kept[k]:.2f} |")
        print("\n".join(lines[-len(variants) - 1:]), flush=True)


def run_latency(name: str, batches: list[int], threads: int, rounds: int,
                lines: list[str]) -> None:
    """(c): selection by the Latency budget (fixed random saliency), the real slim model timed."""
    model, x = build(name)
    space = trainonce.analyze(copy.deepcopy(model), x, align=8)
    for b in batches:
        table = trainonce.measure_latency(space, batch_size=b, threads=threads, progress=True)
        xb = torch.randn((b,) + tuple(x.shape[1:]))
        for target in (0.5, 0.3):
            budget = Latency(target, table)
            score = torch.rand(space.num_zigs, dtype=torch.float64,
                               generator=torch.Generator().manual_seed(0))
            none = torch.zeros(space.num_zigs, dtype=torch.bool)
            try:
                budget.check_reachable(space, Pool.of(space))
            except ValueError as exc:
                lines.append(f"| {name} | {b} | {target:.0%} | unreachable: {exc} | | | |")
                continue
            chosen = budget.select(space, target, score, none)
            predicted = table.cost(~chosen) / table.dense
            dense = copy.deepcopy(space.model)
            state = {k: v.clone() for k, v in space.model.state_dict().items()}
            space.set_zero(chosen)
            slim = trainonce.construct_subnet(space.model, space).eval()
            space.model.load_state_dict(state)
            t = compare_latency({"dense": dense, "slim": slim}, xb, num_threads=threads,
                                rounds=rounds)
            measured = t["slim"].median / t["dense"].median
            lines.append(f"| {name} | {b} | {target:.0%} | {predicted:.3f} | {measured:.3f} | "
                         f"{measured / target - 1:+.1%} | {predicted / measured - 1:+.1%} |")
            print(lines[-1], flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet8,resnet50,mobilenet_v2,vit_b_16")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--latency", action="store_true", help="part (c) instead of (a) and (b)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    if args.latency:
        out = args.out or os.path.join(HERE, "results", "latency_target.md")
        lines = [f"# target_latency on this CPU ({args.threads} thread(s), align 8, torch "
                 f"{torch.__version__})", "",
                 "Command: `python benchmarks/bench_latency.py " + " ".join(sys.argv[1:]) + "`",
                 "", "| model | batch | target | predicted | measured | measured vs target | "
                 "predicted vs measured |", "|---|---|---|---|---|---|---|"]
        for name in args.models.split(","):
            run_latency(name, batches, args.threads, args.rounds, lines)
        _write(out, lines)
        return
    args.out = args.out or os.path.join(HERE, "results", "latency_align.md")
    lines = [
        f"# Slim latency by alignment at 50% FLOPs (CPU, {args.threads} threads, torch "
        f"{torch.__version__})", "",
        "Command: `python benchmarks/bench_latency.py " + " ".join(sys.argv[1:]) + "`", "",
        "speed-up = dense / slim latency (medians of interleaved rounds); efficiency = speed-up "
        "x FLOPs kept (1.0: the speed-up is the FLOPs reduction).", "",
        "| model | batch | variant | FLOPs kept | latency | speed-up | efficiency |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in args.models.split(","):
        run(name, batches, args.threads, args.rounds, lines)
    _write(args.out, lines)


def _write(path: str, lines: list[str]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
