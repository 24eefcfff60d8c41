"""The default `trainonce run` against Torch-Pruning at the extreme budgets (issue 20), side by side
in one run: the same data, model, initial weights, batch order, epochs and LR as the CLI's run.
Torch-Pruning: group-norm sparse training (GroupNormPruner, reg 1e-4) for 60% of the epochs, one
global prune to the FLOPs target (its ratio found by bisection on its own MAC count), fine-tune
for the rest at a tenth of the LR; both cosine. Usage: [--targets 0.1,0.05] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import bench_accuracy_ablation as ablation
import torch
import torch.nn.functional as F
from bench_optim_quality import prune_to_flops

import trainonce.cli.run as cli_run
from trainonce.cli.train import epoch_batches, evaluate

SPARSE_SHARE = 0.6  # epochs of sparse training before the prune (bench_optim_quality.py's)


def torch_pruning_run(target: float, seed: int) -> tuple[float, float, float]:
    """(test accuracy, FLOPs kept by Torch-Pruning's count, seconds) of one Torch-Pruning run."""
    import torch_pruning as tp

    with tempfile.TemporaryDirectory() as tmp:
        cfg = ablation.config(target, seed, {}, tmp)
        torch.manual_seed(cfg.seed)  # as the CLI: the same initial weights as its runs
        job = cli_run._build(cfg, torch.device("cpu"), Path(tmp))
    model, ds, adapt = job.model, job.bundle.train, job.adapt
    example = adapt(ds[0][0].unsqueeze(0))
    dense_macs = tp.utils.count_ops_and_params(model, example)[0]

    def pruner(m, ratio):
        head = [x for x in m.modules() if isinstance(x, torch.nn.Linear)][-1]  # m's own
        return tp.pruner.GroupNormPruner(
            m, example, importance=tp.importance.GroupMagnitudeImportance(p=2),
            pruning_ratio=ratio, global_pruning=True, ignored_layers=[head], reg=1e-4)

    def fit(m, first_epoch: int, epochs: int, lr: float, reg) -> None:
        opt = torch.optim.SGD(m.parameters(), lr=lr, momentum=0.9,
                              weight_decay=cfg.weight_decay)
        steps = epochs * len(epoch_batches(len(ds), cfg.batch_size, cfg.seed, 0))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        m.train()
        for epoch in range(first_epoch, first_epoch + epochs):
            for idx in epoch_batches(len(ds), cfg.batch_size, cfg.seed, epoch):
                x = torch.stack([ds[i][0] for i in idx])
                y = torch.tensor([int(ds[i][1]) for i in idx])
                opt.zero_grad()
                F.cross_entropy(m(adapt(x)), y).backward()
                if reg is not None:
                    reg.regularize(m)
                opt.step()
                sched.step()

    t0 = time.perf_counter()
    sparse = max(1, round(SPARSE_SHARE * cfg.epochs))
    reg = pruner(model, 0.5)
    reg.update_regularizer()
    fit(model, 0, sparse, cfg.lr, reg)
    # the global ratio whose slim model meets the FLOPs target
    best = prune_to_flops(model, pruner, example, target * dense_macs, hi=0.99, rounds=14)
    if best is None:
        raise SystemExit(f"Torch-Pruning cannot reach {target:.0%} of the FLOPs here")
    slim, macs = best
    fit(slim, sparse, cfg.epochs - sparse, cfg.lr * 0.1, None)
    accuracy = evaluate(slim, job.bundle.test, adapt, torch.device("cpu"))
    return accuracy, macs / dense_macs, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="0.1,0.05")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(),
                                                    "trainonce_dense_cache.json"))
    ap.add_argument("--out", help="append the table (markdown) here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    cache = json.loads(Path(args.cache).read_text()) if os.path.exists(args.cache) else {}
    lines = ["| FLOPs kept | dense % | trainonce run (default) - dense | Torch-Pruning - dense "
             "| trainonce - Torch-Pruning | per seed (ours / TP, pts vs dense) | TP FLOPs kept |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for target in (float(t) for t in args.targets.split(",")):
        dens, ours, tps, kept = [], [], [], []
        for s in seeds:
            dens.append(ablation.dense(target, s, {}, cache))
            Path(args.cache).write_text(json.dumps(cache))
            ours.append(ablation.one_run(target, s, {})["slim"])
            acc, k, secs = torch_pruning_run(target, s)
            tps.append(acc)
            kept.append(k)
            print(f"target {target:g} seed {s}: dense {100 * dens[-1]:.1f} ours "
                  f"{100 * ours[-1]:.1f} Torch-Pruning {100 * acc:.1f} (FLOPs {k:.1%}, "
                  f"{secs:.0f} s)", flush=True)
        d_ours = [100 * (o - d) for o, d in zip(ours, dens)]
        d_tp = [100 * (t - d) for t, d in zip(tps, dens)]
        gap = [a - b for a, b in zip(d_ours, d_tp)]

        def ms(v: list[float]) -> str:
            return f"{statistics.mean(v):+.2f} ± {statistics.stdev(v) if len(v) > 1 else 0:.2f}"

        lines.append(f"| {target:g} | {100 * statistics.mean(dens):.2f} | {ms(d_ours)} | "
                     f"{ms(d_tp)} | **{ms(gap)}** | "
                     f"{' ; '.join(f'{a:+.1f} / {b:+.1f}' for a, b in zip(d_ours, d_tp))} | "
                     f"{statistics.mean(kept):.1%} |")
        print(lines[-1], flush=True)
    print("\n".join(lines))
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n".join(lines) + "\n\n")


if __name__ == "__main__":
    main()
