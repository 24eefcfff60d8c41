"""Optimizer step overhead: trainonce optimizers vs torch.optim on resnet50's parameters.

Interleaved in one run (A, B, A, B ...), median of per-round ratios; also the one-off cost of a
period-start selection. Writes benchmarks/results/optim_overhead.md.
Usage: python benchmarks/bench_optim_overhead.py [--rounds 15] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
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

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "optim"))
sys.path.insert(0, os.path.join(HERE, "..", "src"))
from handspace import ChannelSpec, build_space  # noqa: E402

from trainonce.optim import DHSPG, HESSO, HSPG  # noqa: E402


def resnet50_specs(model) -> list[ChannelSpec]:
    """Every conv's out-channels with its BN and the consumers' input columns; residual
    channels of a stage are one coupled group."""
    specs = []
    stages = [model.layer1, model.layer2, model.layer3, model.layer4]
    names = ["layer1", "layer2", "layer3", "layer4"]
    specs.append(
        ChannelSpec(
            "stem", [("conv1", "bn1")], [("layer1.0.conv1", 1), ("layer1.0.downsample.0", 1)]
        )
    )
    for si, (stage, sn) in enumerate(zip(stages, names, strict=True)):
        n = len(stage)
        for b in range(n):
            p = f"{sn}.{b}"
            specs.append(ChannelSpec(f"{p}.c1", [(f"{p}.conv1", f"{p}.bn1")], [(f"{p}.conv2", 1)]))
            specs.append(ChannelSpec(f"{p}.c2", [(f"{p}.conv2", f"{p}.bn2")], [(f"{p}.conv3", 1)]))
        prods = [(f"{sn}.0.downsample.0", f"{sn}.0.downsample.1")]
        prods += [(f"{sn}.{b}.conv3", f"{sn}.{b}.bn3") for b in range(n)]
        cons = [(f"{sn}.{b}.conv1", 1) for b in range(1, n)]
        if si + 1 < 4:
            nxt = names[si + 1]
            cons += [(f"{nxt}.0.conv1", 1), (f"{nxt}.0.downsample.0", 1)]
        else:
            cons += [("fc", 1)]
        specs.append(ChannelSpec(f"{sn}.res", prods, cons))
    return specs


def make(seed=0):
    torch.manual_seed(seed)
    model = torchvision.models.resnet50(weights=None)
    grads = {n: torch.randn_like(p) * 1e-2 for n, p in model.named_parameters()}
    return model, grads


def set_grads(model, grads):
    for n, p in model.named_parameters():
        p.grad = grads[n].clone()


def timed_step(opt) -> float:
    t0 = time.perf_counter()
    opt.step()
    return time.perf_counter() - t0


def compare(name, make_ours, make_ref, rounds, space_model, grads):
    m_ref = copy.deepcopy(space_model)
    ours = make_ours()
    ref = make_ref(m_ref.parameters())
    set_grads(space_model, grads)
    set_grads(m_ref, grads)
    for _ in range(3):  # warm: state allocated, first selections done
        ours.step()
        ref.step()
    ratios, t_ours, t_ref = [], [], []
    for _ in range(rounds):
        b = timed_step(ref)
        a = timed_step(ours)
        ratios.append(a / b)
        t_ours.append(a)
        t_ref.append(b)
    phase = ours.metrics()["phase"]
    return dict(
        name=name,
        phase=phase,
        ratio=statistics.median(ratios),
        ours_ms=1e3 * statistics.median(t_ours),
        ref_ms=1e3 * statistics.median(t_ref),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, grads = make()
    t0 = time.perf_counter()
    space = build_space(model, resnet50_specs(model), torch.zeros(1, 3, 64, 64))
    t_space = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    sgd = dict(lr=0.01, momentum=0.9, weight_decay=1e-4)
    adamw = dict(lr=1e-3, weight_decay=1e-2)
    # schedules that put step 3.. inside a long pruning period, or after pruning
    in_period = dict(
        total_steps=10_000, start_pruning_step=1, pruning_steps=2000, pruning_periods=2
    )
    after = dict(total_steps=10_000, start_pruning_step=1, pruning_steps=2, pruning_periods=2)
    warm = dict(total_steps=10_000, start_pruning_step=5000, pruning_steps=2000)
    rows = []
    cases = [
        ("HESSO sgd", HESSO, sgd, "sgd", warm),
        ("HESSO sgd", HESSO, sgd, "sgd", in_period),
        ("HESSO sgd", HESSO, sgd, "sgd", after),
        ("HESSO adamw", HESSO, adamw, "adamw", in_period),
        ("HESSO adamw", HESSO, adamw, "adamw", after),
        ("DHSPG sgd", DHSPG, sgd, "sgd", in_period),
        ("HSPG sgd", HSPG, sgd, "sgd", warm),
    ]
    for name, cls, hp, variant, sched in cases:
        mdl = copy.deepcopy(model)
        sp = build_space(mdl, resnet50_specs(mdl), torch.zeros(1, 3, 64, 64))

        def ours(cls=cls, sp=sp, hp=hp, variant=variant, sched=sched):
            return cls(sp, variant=variant, target_group_sparsity=0.5, **hp, **sched)

        def ref(params, variant=variant, hp=hp):
            if variant == "sgd":
                return torch.optim.SGD(params, **hp)
            return torch.optim.AdamW(params, **hp)

        rows.append(compare(name, ours, ref, args.rounds, mdl, grads))
        print(rows[-1], flush=True)
    # one-off: a period-start selection (scores + budget search), FLOPs target
    mdl = copy.deepcopy(model)
    sp = build_space(mdl, resnet50_specs(mdl), torch.zeros(1, 3, 64, 64))
    opt = HESSO(sp, target_flops=0.5, **sgd, **in_period)
    set_grads(mdl, grads)
    opt.step()
    sel = timed_step(opt)  # step 1 = period start
    lines = [
        "# Optimizer step overhead on resnet50 parameters",
        "",
        f"{n_params / 1e6:.1f}M params, {space.num_zigs} ZIGs in {len(space.groups)} groups "
        f"(hand-built space, {t_space:.2f}s to build); torch {torch.__version__}, "
        f"{args.threads} threads, {args.rounds} interleaved rounds, median of per-round ratios.",
        "Reference: torch.optim.SGD / AdamW (default foreach path), same hyper-parameters.",
        "",
        "| optimizer | phase | ours ms | torch ms | ratio |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['phase']} | {r['ours_ms']:.1f} | {r['ref_ms']:.1f} "
            f"| {r['ratio']:.2f}x |"
        )
    lines += [
        "",
        f"One-off period-start step (saliency + FLOPs budget search, HESSO sgd): "
        f"{1e3 * sel:.0f} ms.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "optim_overhead.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
