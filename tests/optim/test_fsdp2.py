"""FSDP2 (`fully_shard`) with two gloo processes on CPU: every registered optimizer zeroes the
same ZIGs as one process on the whole batch, weights within 1e-5; a model analysed and sharded
on the meta device trains as one built on the CPU; a `torch.distributed.checkpoint` save / load
mid-run resumes exactly; the slim model is built in one process from the sharded checkpoint.

One spawn runs every scenario (starting the processes dominates the time)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from spawned import init, run_ranks, save
from torch import nn

import trainonce
from trainonce.optim import ATO, DHSPG, OPTIMIZERS

NAMES = dict(OPTIMIZERS)  # hesso, hesso-cric, dhspg, hspg, ato, h2spg
STEPS, MID = 12, 5  # MID: inside HESSO's second period and ATO's controller phase
RESUMED = ("hesso", "ato")


class Net(nn.Module):
    """No BatchNorm (per-rank batch statistics would differ from one process's), odd widths:
    FSDP2's Shard(0) splits 7 and 5 rows unevenly (padding)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 7, 3, padding=1)
        self.conv2 = nn.Conv2d(7, 5, 3, padding=1)
        self.fc = nn.Linear(5, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(h.mean(dim=(2, 3)))


def batch(t: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank ``rank``'s half of step ``t``'s batch (the one-process run takes both halves)."""
    g = torch.Generator().manual_seed(1000 + 10 * t + rank)
    y = torch.randint(0, 10, (8,), generator=g)
    x = torch.randn(8, 1, 8, 8, generator=g) * 0.5
    x[torch.arange(8), 0, y % 8, (y * 3) % 8] += 3.0
    return x, y


def full_batch(t: int) -> tuple[torch.Tensor, torch.Tensor]:
    (x0, y0), (x1, y1) = batch(t, 0), batch(t, 1)
    return torch.cat([x0, x1]), torch.cat([y0, y1])


def build(name: str, shard: bool, seed: int = 0, meta: bool = False):
    """(model, optimizer): analysed whole, then (``shard``) fully_shard per conv and at the
    root, then the optimizer from the same space. ``meta``: analysed and sharded on the meta
    device, then materialised and given the weights of seed ``seed``."""
    torch.manual_seed(seed)
    model = Net()
    if meta:
        weights, model = model.state_dict(), Net().to("meta")
    space = trainonce.analyze(model, torch.zeros(1, 1, 8, 8, device=model.fc.weight.device))
    if shard:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
        )
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (dist.get_world_size(),))
        fully_shard(model.conv1, mesh=mesh)
        fully_shard(model.conv2, mesh=mesh)
        fully_shard(model, mesh=mesh)
        if meta:
            model.to_empty(device="cpu")
            set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True))
    cls = NAMES[name]
    # DHSPG's coefficient floor 1/(lr * steps left) scales an entry in two penalised ZIGs to
    # exactly 0 on a statistics step 2 steps before the end (3 periods of 2): its half-space
    # test then weighs rounding noise, which the shards' summation order changes. 2 periods.
    periods = 1 if cls is ATO else 2 if issubclass(cls, DHSPG) else 3
    kw = dict(lr=0.05, target_flops=0.5, total_steps=STEPS, start_pruning_step=2,
              pruning_steps=6, pruning_periods=periods)
    xb, yb = full_batch(-1)
    if cls.needs_loss_fn:  # the same held-out batch on every rank
        kw["loss_fn"] = lambda: nn.functional.cross_entropy(model(xb), yb)
    if cls is ATO:
        kw.update(controller_every=1, gate_bias=0.0)  # some ZIGs off early: proximal steps
    return model, cls(space, **kw)


def train(model, opt, start: int, stop: int, rank: int | None) -> None:
    for t in range(start, stop):
        x, y = full_batch(t) if rank is None else batch(t, rank)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def _controller(opt) -> dict:
    """ATO's controller weights: they see the masked model's loss, so they differ unless the
    mask was applied to the sharded model as to the plain one."""
    return dict(opt.controller.state_dict()) if isinstance(opt, ATO) else {}


def _mixed_refused() -> str:
    """fully_shard on a submodule only: the root's parameters stay plain, their sums would
    count once per rank; the optimizer refuses, naming the fix."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    model = Net()
    space = trainonce.analyze(model, torch.zeros(1, 1, 8, 8))
    fully_shard(model.conv1, mesh=init_device_mesh("cpu", (dist.get_world_size(),)))
    try:
        OPTIMIZERS["hesso"](space, lr=0.1, target_flops=0.5, total_steps=STEPS)
    except ValueError as e:
        return str(e)
    return ""


def _worker(rank: int, world: int, out: str) -> None:
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    init(rank, world, out)
    full = StateDictOptions(full_state_dict=True)
    try:
        res = {}
        for name in NAMES:
            model, opt = build(name, shard=True)
            if name in RESUMED:  # checkpoint mid-period, sharded, through the standard API
                train(model, opt, 0, MID, rank)
                state = {"model": get_model_state_dict(model),
                         "optim": get_optimizer_state_dict(model, opt)}
                res["shape"] = (sorted(state["optim"]), "trainonce" in
                                state["optim"]["param_groups"][0])
                dcp.save(state, checkpoint_id=f"{out}/{name}_mid")
                train(model, opt, MID, STEPS, rank)
                model2, opt2 = build(name, shard=True, seed=1)  # other weights: load must win
                state = {"model": get_model_state_dict(model2),
                         "optim": get_optimizer_state_dict(model2, opt2)}
                dcp.load(state, checkpoint_id=f"{out}/{name}_mid")
                set_model_state_dict(model2, state["model"])
                set_optimizer_state_dict(model2, opt2, state["optim"])
                train(model2, opt2, MID, STEPS, rank)
                res[f"{name}_resumed"] = (get_model_state_dict(model2, options=full),
                                          opt2.zero.clone(), _controller(opt2))
                dcp.save({"model": get_model_state_dict(model)},
                         checkpoint_id=f"{out}/{name}_final")
            else:
                train(model, opt, 0, STEPS, rank)
            res[name] = (get_model_state_dict(model, options=full), opt.zero.clone(),
                         opt.metrics()["group_sparsity"], _controller(opt))
        model, opt = build("hesso", shard=True, meta=True)
        train(model, opt, 0, STEPS, rank)
        res["meta"] = get_model_state_dict(model, options=full)
        w = model.conv1.weight  # really sharded, unevenly: 7 rows as 4 + 3
        res["rows"] = (type(w).__name__, w.to_local().shape[0])
        res["mixed"] = _mixed_refused()
        save(res, out, rank)
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    out = tmp_path_factory.mktemp("fsdp2")
    return out, run_ranks(_worker, out)


@pytest.mark.parametrize("name", list(NAMES))
def test_fsdp2_matches_one_process(ranks, name):
    _, (r0, r1) = ranks
    model, opt = build(name, shard=False)
    train(model, opt, 0, STEPS, None)
    ref = model.state_dict()
    assert r0["rows"] == ("DTensor", 4) and r1["rows"] == ("DTensor", 3)
    assert "fully_shard to the root module" in r0["mixed"]
    for r in (r0, r1):
        weights, zero, sparsity, controller = r[name]
        assert torch.equal(zero, opt.zero) and int(zero.sum()) > 0
        assert sparsity == opt.metrics()["group_sparsity"]  # metrics() sums over the shards
        for k, v in ref.items():
            torch.testing.assert_close(weights[k], v, atol=1e-5, rtol=0,
                                       msg=lambda m, k=k: f"{k}: {m}")
        for k, v in _controller(opt).items():
            torch.testing.assert_close(controller[k], v, atol=1e-5, rtol=0,
                                       msg=lambda m, k=k: f"{k}: {m}")
    assert all(torch.equal(v, r1[name][0][k]) for k, v in r0[name][0].items())


def test_fsdp2_meta_device_build(ranks):
    _, (r0, _) = ranks
    weights = r0["hesso"][0]
    assert all(torch.equal(v, weights[k]) for k, v in r0["meta"].items())


@pytest.mark.parametrize("name", RESUMED)
def test_fsdp2_dcp_resume_and_slim_model(ranks, name):
    out, (r0, _) = ranks
    assert r0["shape"] == (["param_groups", "state"], True)  # torch's shape, our state inside
    weights, zero, _, controller = r0[name]
    resumed, resumed_zero, resumed_controller = r0[f"{name}_resumed"]
    assert torch.equal(resumed_zero, zero)
    for k, v in [*weights.items(), *controller.items()]:  # resumed == uninterrupted
        assert torch.equal({**resumed, **resumed_controller}[k], v), k
    # one process, no process group: the sharded checkpoint into an unsharded model
    model = Net()
    space = trainonce.analyze(model, torch.zeros(1, 1, 8, 8))
    state = {"model": model.state_dict()}
    dcp.load(state, checkpoint_id=str(out / f"{name}_final"))
    model.load_state_dict(state["model"])
    for k, v in weights.items():
        assert torch.equal(model.state_dict()[k], v), k
    slim = trainonce.construct_subnet(model, space)  # checks slim == dense on the inputs
    assert torch.equal(space.zero_mask(), zero)
    assert sum(p.numel() for p in slim.parameters()) < sum(p.numel() for p in model.parameters())
