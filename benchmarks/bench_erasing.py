"""Pruning vs erasing vs both at equal FLOPs (0.5, 0.3) on 5k MNIST, from scratch, no fine-tuning:
accuracy, params and FLOPs kept, and the slim/dense CPU latency measured side by side in the same
run. Usage: [--quick] [--seeds N] [--epochs E] [--models resnet,supernet]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from bench_optim_quality import fmt, load
from torch.utils.benchmark import Timer

import trainonce
from trainonce.subnet.interface import SlimProgram
from trainonce.testing import fit, minibatches_per_epoch
from trainonce.zoo.supernet import DeepResNet, PooledSuperNet

HERE = os.path.dirname(os.path.abspath(__file__))

# H2SPG's SGD defaults (measured in docs/erasing.md), spelled out so the table names them; the
# same arguments in every mode
H2SPG_ARGS = dict(lmbda=2.0, saliency_weights={"magnitude": 0.5, "avg_magnitude": 0.5})
RECIPE = dict(lr=0.1, momentum=0.9, weight_decay=5e-4)
BATCH = 64
RUNS = [("prune", "HESSO"), ("prune", "H2SPG"), ("erase", "H2SPG"), ("both", "H2SPG")]
MODELS = {
    "resnet": ("DeepResNet(blocks=3, width=8): ResNet-20 layout, stages 8/16/32",
               lambda: DeepResNet(blocks=3, width=8)),
    "supernet": ("PooledSuperNet(c=16, skip=False): 2 cells x 2 nodes of summed conv3x3 / "
                 "conv1x1 / separable candidates, max-pool after each cell",
                 lambda: PooledSuperNet(c=16, skip=False)),
}


def train(make, data, mode: str | None, method: str, keep: float, seed: int, epochs: int):
    """(trained model, space or None, optimizer); ``mode`` None: dense SGD."""
    xtr, ytr = data[0], data[1]
    torch.manual_seed(seed)
    model = make()
    total = epochs * minibatches_per_epoch(len(ytr), BATCH)
    space = None
    if mode is None:
        opt = torch.optim.SGD(model.parameters(), **RECIPE)
    else:
        space = trainonce.analyze(model, xtr[:2], mode=mode)
        kw = H2SPG_ARGS if method == "H2SPG" else {}
        opt = getattr(trainonce, method)(space, target_flops=keep, total_steps=total,
                                         **RECIPE, **kw)
    fit(model, opt, xtr, ytr, epochs, seed=seed, batch_size=BATCH)
    return model.eval(), space, opt


def _forward(m, x):
    with torch.inference_mode():
        return m(x)


def latency_ratio(slim, dense, x, rounds: int = 15, number: int = 3) -> float:
    """Median over interleaved rounds of (slim time / dense time), torch.utils.benchmark
    timers on one thread: both models see the same machine load in every round."""
    timers = [Timer("f(m, x)", globals={"f": _forward, "m": m, "x": x}, num_threads=1)
              for m in (dense, slim)]
    for t in timers:
        t.timeit(2)  # warm-up
    ratios = []
    for _ in range(rounds):
        d, s = (t.timeit(number).mean for t in timers)
        ratios.append(s / d)
    return statistics.median(ratios)


def accuracy(logits, y) -> float:
    return (logits.argmax(1) == y).float().mean().item() * 100


def erased(space, zero) -> str:
    """``structures erased / removable``, plus the channel ZIGs zeroed in what is left (the
    channels of an erased structure are zero too, but are not a pruning decision)."""
    units = [g for g in space.groups if g.kind == "structure" and g.prunable]
    gone = [g for g in units if bool(zero[g.offset])]
    inside = {m.param for g in gone for m in g.members}
    chans = sum(int(zero[g.offset : g.offset + g.size].sum()) for g in space.groups
                if g.kind == "channel" and any(m.param not in inside for m in g.members))
    parts = [f"{len(gone)}/{len(units)} units"] if units else []
    return ", ".join(parts + ([f"{chans} ch"] if chans or not units else []))


QUICK = dict(seeds=1, epochs=4)
FULL = dict(seeds=3, epochs=4)


def bench_model(key: str, data, seeds, epochs: int, keeps, lines: list[str]) -> None:
    desc, make = MODELS[key]
    xte, yte, xlat = data[2], data[3], data[2][:256]
    t_start = time.time()
    dense = {s: train(make, data, None, "SGD", 1.0, s, epochs)[0] for s in seeds}
    with torch.no_grad():
        dense_acc = [accuracy(dense[s](xte), yte) for s in seeds]
    n_dense = sum(p.numel() for p in dense[seeds[0]].parameters())
    # a slim traced program is timed against the dense model traced the same way (static batch
    # 256), so that the program form itself does not count as a speed-up
    programs = {s: torch.export.export(dense[s], (xlat,)).module() for s in seeds}
    form = [latency_ratio(programs[s], dense[s], xlat) for s in seeds]
    lines += [
        f"## {key}: {desc}", "",
        f"Dense: {fmt(dense_acc)} %, {n_dense:,} parameters. The dense model as a "
        f"`torch.export` program runs at {statistics.median(form):.2f}x its eager latency "
        f"(per seed: {', '.join(f'{f:.2f}' for f in form)}).", "",
        "| mode | optimizer | FLOPs target | FLOPs kept | params kept | accuracy % | Δ vs dense | "
        "erased | slim | latency slim / dense eager | latency slim / dense same form | "
        "speed-up / FLOPs reduction |",
        "|---|---|---:|---:|---:|---:|---:|---|---|---:|---:|---:|",
    ]
    for keep in keeps:
        for mode, method in RUNS:
            accs, kept, params, lat, same, eff, what, mism = [], [], [], [], [], [], [], 0
            for s in seeds:
                model, space, opt = train(make, data, mode, method, keep, s, epochs)
                slim = trainonce.construct_subnet(model, space).eval()
                with torch.no_grad():
                    full_logits, slim_logits = model(xte), slim(xte)
                mism += int(not torch.equal(full_logits.argmax(1), slim_logits.argmax(1)))
                zero = space.zero_mask()
                accs.append(accuracy(slim_logits, yte))
                kept.append(space.flops(~zero) / space.flops())
                params.append(sum(p.numel() for p in slim.parameters()) / n_dense)
                lat.append(latency_ratio(slim, dense[s], xlat))
                is_program = isinstance(slim, SlimProgram)
                same.append(latency_ratio(slim, programs[s], xlat) if is_program else lat[-1])
                eff.append(kept[-1] / same[-1])  # (1 / latency ratio) / (1 / FLOPs kept)
                what.append(erased(space, zero))
            kind = "program" if isinstance(slim, SlimProgram) else "eager"
            delta = statistics.mean(accs) - statistics.mean(dense_acc)
            row = (f"| {mode} | {method} | {keep} | {statistics.mean(kept):.3f} | "
                   f"{statistics.mean(params):.3f} | {fmt(accs)} | {delta:+.2f} | "
                   f"{'; '.join(sorted(set(what)))} | {kind} | {statistics.median(lat):.2f}x | "
                   f"{statistics.median(same):.2f}x | {statistics.mean(eff):.2f} |")
            if mism:
                row += f" slim != trained model in {mism} run(s)"
            lines.append(row)
            print(key, row, f"[{time.time() - t_start:.0f}s]", flush=True)
    lines.append("")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="one seed")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--models", default="resnet,supernet")
    args = ap.parse_args()
    cfg = QUICK if args.quick else FULL
    torch.set_num_threads(1)  # the machine is shared: one core, and latency on one thread
    seeds = list(range(args.seeds or cfg["seeds"]))
    epochs = args.epochs or cfg["epochs"]
    keeps = (0.5, 0.3)
    data = load("mnist5k")
    t0, load0 = time.time(), os.getloadavg()[0]
    lines = [
        "# Pruning vs erasing vs both at equal FLOPs (5k MNIST, from scratch, no fine-tuning)", "",
        f"`python benchmarks/bench_erasing.py{' --quick' if args.quick else ''}`. "
        f"{len(data[1])} train / {len(data[3])} test images pooled to 14x14 "
        "(`bench_optim_quality.load('mnist5k')`); SGD momentum 0.9, wd 5e-4, lr 0.1 cosine, "
        f"batch 64, {epochs} epochs, the same recipe for dense and compressed; seeds "
        f"{', '.join(map(str, seeds))}; torch {torch.__version__}, 1 thread. Modes: `prune` "
        "(channel ZIGs), `erase` (one ZIG per removable structure), `both` (channels nested in "
        f"structures). H2SPG with {H2SPG_ARGS} in every mode; HESSO with its defaults. "
        "Accuracy of the slim model (mean ± std over seeds); FLOPs kept exact from the space; "
        "params kept = slim / dense parameter count; latency = median over 15 interleaved "
        "rounds of slim/dense time (torch.utils.benchmark Timer, batch 256, 1 thread), median "
        "over seeds, against the dense eager model (what a user swaps) and against the dense "
        "model in the slim model's form (`slim`: eager surgery, or a traced program timed "
        "against the dense `torch.export` program); speed-up / FLOPs reduction = FLOPs kept / "
        "same-form latency ratio (1.0: latency falls exactly as FLOPs do), mean over seeds.",
        "",
    ]
    for key in args.models.split(","):
        bench_model(key, data, seeds, epochs, keeps, lines)
    lines.append(f"Wall time {time.time() - t0:.0f} s; machine load (1-min average, 2 shared "
                 f"cores) {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end.")
    text = "\n".join(lines) + "\n"
    print(text)
    out = os.path.join(HERE, "results", f"erasing{'_quick' if args.quick else ''}.md")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
