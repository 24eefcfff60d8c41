"""One place per concept: the common constructor arguments, the name -> class registry the CLI
builds from, and the selection hook for constraints between ZIGs."""

from __future__ import annotations

import pytest
import torch
from handspace import SmallCNN, smallcnn_space
from runs import make_run, train_steps

from trainonce.cli.setup import RunConfig, build_optimizer
from trainonce.optim import (
    ATO,
    DHSPG,
    H2SPG,
    HESSO,
    HESSOCRIC,
    HSPG,
    OPTIMIZERS,
    ZigOptimizer,
    register_optimizer,
)
from trainonce.optim.budgets import BUDGETS, COST_BUDGETS, Flops, GroupSparsity, Params
from trainonce.optim.targets import Pool


class Probe(HESSO):
    """A new optimizer in a few lines: its own arguments, the common ones passed through."""

    needs_loss_fn = True

    def __init__(self, space, lr=0.1, *, loss_fn=None, probe_scale: float = 2.0, **common):
        super().__init__(space, lr, **common)
        self.loss_fn, self.probe_scale = loss_fn, probe_scale


def _space():
    torch.manual_seed(0)
    model = SmallCNN((8, 8, 16))
    return model, smallcnn_space(model)


def test_budget_kinds_are_declared_and_enforced():
    """What an optimizer takes is said by its class (the contract tests read it)."""
    _, space = _space()
    assert ATO.budgets == COST_BUDGETS and ATO.max_pruning_periods == 1
    assert all(c.budgets == BUDGETS for c in (HESSO, DHSPG, HSPG, H2SPG, HESSOCRIC))
    with pytest.raises(ValueError, match="Probe takes target_flops, not target_group_sparsity"):
        type("Probe", (HESSO,), {"budgets": (Flops,)})(
            space, target_group_sparsity=0.5, total_steps=10
        )


def test_cli_names_map_to_classes():
    assert OPTIMIZERS == {
        "hesso": HESSO, "hesso-cric": HESSOCRIC, "dhspg": DHSPG, "hspg": HSPG, "ato": ATO,
        "h2spg": H2SPG,
    }
    assert HESSOCRIC.needs_loss_fn and ATO.needs_loss_fn and not any(
        c.needs_loss_fn for c in (HESSO, DHSPG, HSPG, ZigOptimizer)
    )


def test_registered_optimizer_is_built_with_common_arguments_and_loss_fn():
    _, space = _space()
    register_optimizer("probe", Probe)
    try:
        cfg = RunConfig(optimizer="probe", variant="adamw", lr=0.01, target_kind="params")
        loss_fn = lambda: torch.tensor(1.0)  # noqa: E731
        opt = build_optimizer(cfg, space, total_steps=20, loss_fn=loss_fn)
        assert type(opt) is Probe and opt.loss_fn is loss_fn and opt.probe_scale == 2.0
        assert opt.variant == "adamw" and opt.param_groups[0]["lr"] == 0.01
        assert opt.target == Params(cfg.target) and opt.schedule.total == 20
        hesso = build_optimizer(RunConfig(), space, total_steps=20, loss_fn=loss_fn)
        assert type(hesso) is HESSO  # HESSO takes no loss_fn: not passed
    finally:
        OPTIMIZERS.pop("probe")


def test_registry_refuses_clashes_and_non_optimizers():
    with pytest.raises(ValueError, match="taken by HESSO"):
        register_optimizer("hesso", Probe)
    register_optimizer("hesso", HESSO)  # the same pair again is harmless
    with pytest.raises(TypeError):
        register_optimizer("sgd", torch.optim.SGD)
    with pytest.raises(ValueError, match="unknown optimizer 'nope'.*hesso-cric"):
        build_optimizer(RunConfig(optimizer="nope"), _space()[1], total_steps=20)


def test_common_arguments_are_keyword_only():
    _, space = _space()
    with pytest.raises(TypeError):
        HESSO(space, 0.1, "adam")
    opt = HESSO(space, 0.05, target_group_sparsity=0.5, total_steps=10)
    assert opt.param_groups[0]["lr"] == 0.05 and opt.param_groups[0]["momentum"] == 0.9


def test_admissible_hook_constrains_both_selectors():
    """At most 2 ZIGs of group "mid" may go, although its ZIGs score lowest."""
    _, space = _space()
    mid = next(g for g in space.groups if g.name == "mid")
    in_mid = torch.zeros(space.num_zigs, dtype=torch.bool)
    in_mid[mid.offset : mid.offset + mid.size] = True
    gen = torch.Generator().manual_seed(1)
    score = torch.rand(space.num_zigs, dtype=torch.float64, generator=gen)
    score[in_mid] *= 1e-3
    calls = []

    def admissible(chosen):
        calls.append(1)
        return int((chosen & in_mid).sum()) <= 2

    pool = Pool.of(space, admissible=admissible)
    none = torch.zeros(space.num_zigs, dtype=torch.bool)
    free = GroupSparsity(0.5).select(space, 0.5, score, none)
    assert int((free & in_mid).sum()) > 2  # without the hook "mid" goes first
    count = GroupSparsity(0.5).select(space, 0.5, score, none, pool)
    assert int(count.sum()) == 16 and int((count & in_mid).sum()) == 2 and calls
    cost = Flops(0.7).select(space, 0.7, score, none, pool)
    assert int((cost & in_mid).sum()) <= 2
    assert 0.69 <= space.flops(~cost) / space.flops() <= 0.7


def test_optimizer_selects_from_its_pool():
    """Selection during a run honours the pool's hook (a future erasing mode's entry point)."""
    zeros = []
    for hook in (False, True):
        model, space, opt = make_run(HESSO, lr=0.05, target_group_sparsity=0.5, total_steps=20)
        res = slice(space.groups[0].offset, space.groups[0].offset + space.groups[0].size)
        if hook:
            opt.pool = Pool(opt.pool.prunable, opt.pool.gid, lambda c, r=res: not bool(c[r].any()))
        train_steps(model, opt, 0, 20)
        assert int(opt.zero.sum()) == round(0.5 * space.num_prunable_zigs)
        zeros.append(int(opt.zero[res].sum()))
    assert zeros[0] > 0 and zeros[1] == 0


@pytest.mark.parametrize("cls", list(OPTIMIZERS.values()), ids=lambda c: c.__name__)
def test_add_param_group_is_refused_at_once(cls):
    """One param group, fixed when built: refused at the call, not at the next step."""
    model, _, opt = make_run(cls, lr=0.05, target_flops=0.5, total_steps=10)
    extra = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(RuntimeError, match="one param group.*second torch optimizer"):
        opt.add_param_group({"params": [extra]})
    assert len(opt.param_groups) == 1
    assert [id(p) for p in opt.param_groups[0]["params"]] == [id(p) for p in opt.params]
    train_steps(model, opt, 0, 2)  # the optimizer is unharmed
    assert opt.steps_taken == 2
