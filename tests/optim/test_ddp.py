"""DDP with two gloo processes: same selections, identical weights on every rank."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from runs import make_run, periods, toy_batch
from spawned import init, run_ranks, save

from trainonce.optim import ATO, OPTIMIZERS, optimizer_class


def _worker(rank: int, world: int, out: str) -> None:
    init(rank, world, out)
    try:
        res = {}
        for name in OPTIMIZERS:  # one spawn for all: starting the processes dominates
            res[name] = _train(name, rank)
        save(res, out, rank)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _train(name: str, rank: int) -> dict:
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
    return {"model": model.state_dict(), "zero": opt.zero}


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    out = tmp_path_factory.mktemp("ddp")
    return run_ranks(_worker, out)


@pytest.mark.parametrize("name", list(OPTIMIZERS))  # every registered optimizer
def test_ddp_two_gloo_ranks_identical(ranks, name):
    r0, r1 = ranks[0][name], ranks[1][name]
    assert torch.equal(r0["zero"], r1["zero"]) and int(r0["zero"].sum()) > 0
    for k, v in r0["model"].items():
        assert torch.equal(v, r1["model"][k]), k
