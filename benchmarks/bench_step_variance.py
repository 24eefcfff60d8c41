"""Why the step-time ratio of the half-space optimizers varies between runs: per-round ratios to
torch SGD with 1 and 2 threads, back to back, and the number of aten ops per step.
Usage: [--rounds 10] [--repeats 2]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics

import torch
from bench_optim_overhead import PRUNE, SGD, set_grads, timed_step, torchvision
from torch.profiler import ProfilerActivity, profile

import trainonce
from trainonce.optim import DHSPG

HERE = os.path.dirname(os.path.abspath(__file__))


def aten_ops(opt) -> int:
    """aten calls (nested ones included) of one ``opt.step()``."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        opt.step()
    return sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None)
    grads = {n: torch.randn_like(p) * 1e-2 for n, p in model.named_parameters()}
    example = torch.randn(1, 3, 64, 64)
    opts = {}
    for k in (1, 16):
        m = copy.deepcopy(model)
        set_grads(m, grads)
        space = trainonce.analyze(m, example)
        opts[k] = DHSPG(space, target_group_sparsity=0.5, stats_every=k, **SGD, **PRUNE)
    rm = copy.deepcopy(model)
    set_grads(rm, grads)
    ref = torch.optim.SGD(rm.parameters(), **SGD)
    for _ in range(3):
        ref.step()
        for o in opts.values():
            o.step()
    torch.set_num_threads(1)
    ops_torch, ops_stats = aten_ops(ref), aten_ops(opts[1])
    while opts[16].is_stats_step(opts[16].steps_taken):
        opts[16].step()
    ops_between = aten_ops(opts[16])
    rows = []
    for rep in range(args.repeats):
        for th in (1, 2):
            torch.set_num_threads(th)
            load = os.getloadavg()[0]
            rs = [timed_step(opts[1]) / timed_step(ref) for _ in range(args.rounds)]
            rows.append((rep + 1, th, load, min(rs), statistics.median(rs), max(rs)))
            print(rows[-1], flush=True)
    lines = [
        "# Why the half-space step ratio varies",
        "",
        f"`python benchmarks/bench_step_variance.py --rounds {args.rounds} --repeats "
        f"{args.repeats}`: resnet50 parameters, DHSPG with the statistics measured at every step "
        "(`stats_every=1`, the exact step), target_group_sparsity 0.5, inside a pruning period; "
        "each round is one torch.optim.SGD step then one DHSPG step; the same process runs "
        f"1 and 2 threads alternately, {os.cpu_count()} cores shared with other jobs.",
        "",
        f"aten calls per step (nested included): torch SGD {ops_torch}, DHSPG statistics step "
        f"{ops_stats}, DHSPG step between statistics steps {ops_between}.",
        "",
        "| repeat | threads | load (1 min) | ratio min | ratio median | ratio max |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r} | {th} | {load:.1f} | {lo:.2f}x | {med:.2f}x | {hi:.2f}x |"
        for r, th, load, lo, med, hi in rows
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(HERE, "results", "optim_step_variance.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
