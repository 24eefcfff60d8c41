"""Optimizer step time under FSDP2 (two gloo processes on CPU, one thread each): trainonce's
optimizers vs torch.optim.SGD on the same sharded resnet18 (`fully_shard` per residual stage and
at the root), fixed gradients, interleaved rounds of ``--block`` steps, median ms per step on
rank 0. Usage: [--rounds 7] [--block 8]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import time

import machine  # noqa: F401  (this machine's torchvision quirk, before torchvision)
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torchvision
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

import trainonce
from trainonce.optim import HESSO, HSPG

SGD = dict(lr=0.01, momentum=0.9, weight_decay=1e-4)
WARM = dict(total_steps=10_000, start_pruning_step=5000, pruning_steps=2000)
PRUNE = dict(total_steps=10_000, start_pruning_step=1, pruning_steps=2000, pruning_periods=2)
CASES = [  # (label, optimizer class or None for torch SGD, schedule, extra)
    ("torch SGD", None, {}, {}),
    ("HESSO warm-up", HESSO, WARM, {}),
    ("HESSO pruning", HESSO, PRUNE, {}),
    ("HSPG pruning, statistics every step", HSPG, PRUNE, dict(stats_every=1)),
]


def _worker(rank: int, world: int, port: int, rounds: int, block: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = torchvision.models.resnet18()
        space = trainonce.analyze(model, torch.zeros(1, 3, 64, 64))
        mesh = init_device_mesh("cpu", (world,))
        for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
            fully_shard(stage, mesh=mesh)
        fully_shard(model, mesh=mesh)
        gen = torch.Generator().manual_seed(rank)
        for p in model.parameters():  # fixed local gradients, the sharded layout of a backward
            p.grad = trainonce.sharding.like(
                torch.randn(p.to_local().shape, generator=gen) * 1e-3, p)
        opts = {label: (torch.optim.SGD(model.parameters(), **SGD) if cls is None
                        else cls(space, **SGD, target_flops=0.5, **sched, **extra))
                for label, cls, sched, extra in CASES}
        times: dict[str, list[float]] = {label: [] for label in opts}
        for _ in range(rounds):
            for label, opt in opts.items():
                dist.barrier()
                t0 = time.perf_counter()
                for _ in range(block):
                    opt.step()
                times[label].append((time.perf_counter() - t0) / block * 1e3)
        if rank == 0:
            base = statistics.median(times["torch SGD"])
            print(f"resnet18 under FSDP2, 2 gloo ranks, {rounds} rounds x {block} steps")
            for label, ts in times.items():
                med = statistics.median(ts)
                print(f"  {label:40s} {med:8.2f} ms/step  {med / base:5.2f}x")
    finally:
        dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--block", type=int, default=8)
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(2, port, args.rounds, args.block), nprocs=2, join=True)


if __name__ == "__main__":
    main()
