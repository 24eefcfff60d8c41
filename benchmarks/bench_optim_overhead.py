"""Optimizer step overhead vs torch.optim (default and foreach) on resnet50's parameters, space
from `trainonce.analyze`, interleaved rounds of ``--block`` consecutive steps each (so steps
that do more work every few steps, like the half-space statistics steps, are counted at their
share). Usage: [--rounds 15] [--block 16] [--threads 2] [--cases DHSPG,HSPG]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import torch

try:  # machine quirk (see ENVIRONMENT.md): CUDA torchvision wheel on CPU torch
    if not hasattr(torch.ops.torchvision, "nms"):
        raise AttributeError
except Exception:
    _lib = torch.library.Library("torchvision", "DEF")
    _lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
import torchvision  # noqa: E402

import trainonce  # noqa: E402
from trainonce.optim import DHSPG, H2SPG, HESSO, HSPG  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

SGD = dict(lr=0.01, momentum=0.9, weight_decay=1e-4)
ADAMW = dict(lr=1e-3, weight_decay=1e-2)
# schedules that put the timed steps (3..) in warm-up, inside a long pruning period, or after
WARM = dict(total_steps=10_000, start_pruning_step=5000, pruning_steps=2000)
PRUNE = dict(total_steps=10_000, start_pruning_step=1, pruning_steps=2000, pruning_periods=2)
AFTER = dict(total_steps=10_000, start_pruning_step=1, pruning_steps=2, pruning_periods=2)
EXACT = dict(stats_every=1)  # the half-space statistics measured at every step
CASES = [
    ("HESSO", HESSO, "sgd", WARM, {}),
    ("HESSO", HESSO, "sgd", PRUNE, {}),
    ("HESSO", HESSO, "sgd", AFTER, {}),
    ("HESSO", HESSO, "adamw", WARM, {}),
    ("HESSO", HESSO, "adamw", PRUNE, {}),
    ("HESSO", HESSO, "adamw", AFTER, {}),
    ("DHSPG", DHSPG, "sgd", PRUNE, {}),
    ("DHSPG", DHSPG, "sgd", PRUNE, EXACT),
    ("DHSPG", DHSPG, "sgd", AFTER, {}),
    ("HSPG", HSPG, "sgd", WARM, {}),
    ("HSPG", HSPG, "sgd", WARM, EXACT),
    ("HSPG", HSPG, "sgd", PRUNE, {}),
    ("HSPG", HSPG, "sgd", PRUNE, EXACT),
    ("H2SPG", H2SPG, "sgd", WARM, {}),
    ("H2SPG", H2SPG, "sgd", PRUNE, {}),
]


def set_grads(model, grads) -> None:
    for n, p in model.named_parameters():
        p.grad = grads[n].clone()


def timed_step(opt, n: int = 1) -> float:
    """Seconds per step over ``n`` consecutive steps."""
    t0 = time.perf_counter()
    for _ in range(n):
        opt.step()
    return (time.perf_counter() - t0) / n


def ref_opt(params, variant: str, foreach: bool | None):
    if variant == "sgd":
        return torch.optim.SGD(params, foreach=foreach, **SGD)
    return torch.optim.AdamW(params, foreach=foreach, **ADAMW)


def compare(model, space_fn, cls, variant, sched, grads, rounds, block=1, kw=None) -> dict:
    mdl = copy.deepcopy(model)
    ours = cls(
        space_fn(mdl),
        variant=variant,
        target_group_sparsity=0.5,
        **(SGD if variant == "sgd" else ADAMW),
        **sched,
        **(kw or {}),
    )
    refs = {}
    for fe in (None, True):
        m = copy.deepcopy(model)
        set_grads(m, grads)
        refs[fe] = ref_opt(m.parameters(), variant, fe)
    set_grads(mdl, grads)
    for _ in range(3):  # warm: state allocated, first selections done
        ours.step()
        for r in refs.values():
            r.step()
    t = {"ours": [], None: [], True: []}
    for _ in range(rounds):
        t[None].append(timed_step(refs[None], block))
        t["ours"].append(timed_step(ours, block))
        t[True].append(timed_step(refs[True], block))
    per_round = {fe: [a / b for a, b in zip(t["ours"], t[fe], strict=True)] for fe in (None, True)}
    ratio = {fe: statistics.median(r) for fe, r in per_round.items()}
    spread = (min(per_round[None]), max(per_round[None]))
    ms = {k: 1e3 * statistics.median(v) for k, v in t.items()}
    return dict(phase=ours.metrics()["phase"], ratio=ratio, ms=ms, spread=spread)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--block", type=int, default=16, help="consecutive steps timed per round")
    ap.add_argument("--tag", default="", help="suffix of the results file name")
    ap.add_argument("--cases", default=None, help="comma list of optimizer names (default all)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None)
    grads = {n: torch.randn_like(p) * 1e-2 for n, p in model.named_parameters()}
    example = torch.randn(1, 3, 64, 64)
    t0 = time.perf_counter()
    space = trainonce.analyze(model, example)
    t_space = time.perf_counter() - t0

    def space_fn(m):
        return trainonce.analyze(m, example)

    rows = []
    cases = [c for c in CASES if args.cases is None or c[0] in args.cases.split(",")]
    for name, cls, variant, sched, kw in cases:
        r = compare(model, space_fn, cls, variant, sched, grads, args.rounds, args.block, kw)
        label = " ".join([name, variant, *(f"{k}={v}" for k, v in kw.items())])
        rows.append((label, r))
        print(rows[-1], flush=True)
    # one-off: a period-start selection (scores + budget search), FLOPs target
    mdl = copy.deepcopy(model)
    opt = HESSO(space_fn(mdl), target_flops=0.5, **SGD, **PRUNE)
    set_grads(mdl, grads)
    opt.step()
    sel = timed_step(opt)  # step 1 = period start
    load1 = os.getloadavg()
    n_params = sum(p.numel() for p in model.parameters())
    lines = [
        "# Optimizer step overhead on resnet50 parameters",
        "",
        f"{n_params / 1e6:.1f}M params, {space.num_zigs} ZIGs ({space.num_prunable_zigs} "
        f"prunable) in {len(space.groups)} groups from `trainonce.analyze` at 64x64 "
        f"({t_space:.1f} s); torch {torch.__version__}, {args.threads} threads, {args.rounds} "
        f"interleaved rounds of {args.block} consecutive steps (torch default, ours, torch "
        "foreach), median of per-round ratios, ms per step; "
        "target_group_sparsity 0.5. Reference: torch.optim.SGD / AdamW with the same "
        "hyper-parameters; `default` = foreach=None, which on CPU is the for-loop path "
        "(foreach=False), `foreach` = foreach=True.",
        f"Machine load (1-min load average, 2 cores, shared): {load0[0]:.1f} before, "
        f"{load1[0]:.1f} after; absolute ms vary with load, ratios are from the same rounds.",
        "",
        "| optimizer | phase | ours ms | torch default ms | torch foreach ms "
        "| ratio vs default | rounds min-max | ratio vs foreach |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows:
        lines.append(
            f"| {name} | {r['phase']} | {r['ms']['ours']:.0f} | {r['ms'][None]:.0f} | "
            f"{r['ms'][True]:.0f} | {r['ratio'][None]:.2f}x | {r['spread'][0]:.2f}-"
            f"{r['spread'][1]:.2f} | {r['ratio'][True]:.2f}x |"
        )
    lines += [
        "",
        f"One-off period-start step (saliency + FLOPs budget search, HESSO sgd): "
        f"{1e3 * sel:.0f} ms.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", f"optim_overhead{args.tag}.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
