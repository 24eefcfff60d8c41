"""DDP with two gloo processes: same selections, identical weights on every rank."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from runs import make_run, periods, toy_batch

from trainonce.optim import ATO, OPTIMIZERS, optimizer_class


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str, name: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        cls = optimizer_class(name)
        kw = dict(
            lr=0.05,
            target_flops=0.5,
            total_steps=12,
            start_pruning_step=2,
            pruning_steps=6,
            pruning_periods=periods(cls, 3),
        )
        if cls is ATO:  # controllers differ by rank, updated every step: the mask must agree
            kw.update(controller_every=1, controller_seed=rank)
        if cls.needs_loss_fn:  # a rank-dependent loss_fn: selection must still agree
            xb, yb = toy_batch(-5 - rank, 16)
            kw["loss_fn"] = lambda: torch.nn.functional.cross_entropy(model(xb), yb)
        model, space, opt = make_run(cls, widths=(8, 8, 16), **kw)
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        for t in range(12):
            x, y = toy_batch(100 * t + rank, 16)  # each rank its own shard
            opt.zero_grad()
            torch.nn.functional.cross_entropy(ddp(x), y).backward()
            opt.step()
        torch.save({"model": model.state_dict(), "zero": opt.zero}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("name", list(OPTIMIZERS))  # every registered optimizer
def test_ddp_two_gloo_ranks_identical(tmp_path, name):
    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), name), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert torch.equal(r0["zero"], r1["zero"]) and int(r0["zero"].sum()) > 0
    for k, v in r0["model"].items():
        assert torch.equal(v, r1["model"][k]), k
