"""Distributed data parallel: two CPU processes (torch.distributed, gloo) train and prune the
built-in ResNet8 on their own halves of the digits; DDP averages gradients and the optimizer
broadcasts rank 0's selections, so both ranks end with the same zero groups and weights.

Run from a checkout: ``python examples/ddp.py [--smoke]`` (spawns 2 processes itself;
``--smoke``: a few steps, seconds). Needs the ``data`` extra.
"""

from __future__ import annotations

import argparse
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

import trainonce
from trainonce.data import load_data
from trainonce.testing import minibatches, minibatches_per_epoch
from trainonce.zoo import build_model


def worker(rank: int, world: int, port: int, epochs: int, limit: int | None) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        x, y = (t[:limit] for t in load_data("digits").train.tensors)
        x, y = x[rank::world], y[rank::world]  # each rank its own shard
        torch.manual_seed(0)  # the same initial weights on every rank
        model = build_model("resnet8", 10, 1).model
        space = trainonce.analyze(model, (x[:2],))  # on the bare module, before wrapping
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        opt = trainonce.HESSO(space, lr=0.05, target_flops=0.5,
                              total_steps=epochs * minibatches_per_epoch(len(y), 32))
        for idx in minibatches(len(y), epochs, seed=rank, batch_size=32):
            opt.zero_grad()
            F.cross_entropy(ddp(x[idx]), y[idx]).backward()
            opt.step()
        flat = torch.cat([p.detach().flatten() for p in model.parameters()])
        gathered = [torch.empty_like(flat) for _ in range(world)]
        dist.all_gather(gathered, flat)
        if rank == 0:
            same = all(torch.equal(g, flat) for g in gathered)
            slim = trainonce.construct_subnet(model.eval(), space)
            kept = sum(p.numel() for p in slim.parameters()) / flat.numel()
            print(f"ranks agree bit for bit: {same}; FLOPs kept "
                  f"{opt.metrics()['flops_kept']:.2f}, params kept {kept:.2f}")
            assert same
        # leave together, with DDP's reducer (its gloo work holds tensors) freed first: else
        # ~ProcessGroupGloo waits on a gloo thread that wants the GIL (torch issue #75097)
        del ddp
        dist.barrier()
    finally:
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few steps")
    args = parser.parse_args(argv)
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    smoke = (2, 256) if args.smoke else (8, None)  # (epochs, images used)
    mp.spawn(worker, args=(2, port, *smoke), nprocs=2, join=True)


if __name__ == "__main__":
    main()
