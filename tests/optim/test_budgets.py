"""Budget classes: one per kind, chosen from the target keywords; a new kind is one subclass."""

from __future__ import annotations

import pytest
import torch
from handspace import SmallCNN, smallcnn_space

from trainonce.optim import HESSO
from trainonce.optim.budgets import (
    BUDGETS,
    CostBudget,
    Flops,
    GroupSparsity,
    Params,
    budget_from_args,
    budget_kind,
)
from trainonce.optim.targets import Pool


def _space():
    torch.manual_seed(0)
    return smallcnn_space(SmallCNN((8, 8, 16)))


def test_keywords_pick_one_budget_and_bad_ones_say_what_to_do():
    assert budget_from_args(target_flops=0.5) == Flops(0.5)
    assert budget_from_args(target_group_sparsity=0.3) == GroupSparsity(0.3)
    assert [budget_kind(b.name) for b in BUDGETS] == list(BUDGETS)
    with pytest.raises(ValueError, match="exactly one of target_group_sparsity, target_flops"):
        budget_from_args(target_flops=0.5, target_params=0.5)
    with pytest.raises(ValueError, match=r"got none"):
        budget_from_args()
    with pytest.raises(TypeError, match="unknown target target_memory"):
        budget_from_args(target_memory=0.5)
    with pytest.raises(ValueError, match="latency_table goes with target_latency"):
        budget_from_args(target_flops=0.5, latency_table=object())
    with pytest.raises(TypeError, match=r"target_params must be a number.*'0.5'"):
        Params("0.5")
    with pytest.raises(ValueError, match=r"target_flops must be in \(0, 1\), got 1.5"):
        Flops(1.5)
    assert Flops(0.25).uniform_keep() == 0.5 and GroupSparsity(0.25).uniform_keep() == 0.75
    assert Flops(0.4).describe() == "keeping 40% of the FLOPs"


class Activations(CostBudget):
    """A kind the library does not have, in a few lines: the FLOPs of the space weighted by
    a per-ZIG factor (stands in for any cost a user can compute from a keep mask)."""

    name = "activations"
    label = "activation memory"
    meaning = "share of the activation memory kept"

    def cost(self, space, keep):
        return space.flops(keep) + space.num_params(keep)

    def marginal(self, space):
        return space.zig_flops() + space.zig_params()

    def soft(self, space, mask):
        return space.costs.soft("flops", mask) + space.costs.soft("params", mask)


def test_a_new_cost_kind_is_one_class_through_selection_and_optimizer():
    space = _space()
    budget = Activations(0.5)
    score = torch.rand(space.num_zigs, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(0))
    chosen = budget.select(space, 0.5, score, torch.zeros(space.num_zigs, dtype=torch.bool))
    kept = budget.cost(space, ~chosen) / budget.dense(space)
    assert 0.49 <= kept <= 0.5
    assert budget.soft(space, (~chosen).double()).item() == pytest.approx(
        budget.cost(space, ~chosen))
    bound = budget.reachable_bound(space, Pool.of(space))
    assert 0 < bound < 0.5
    with pytest.raises(ValueError, match=r"target_activations=0.01 cannot be reached.*choose"):
        Activations(0.01).check_reachable(space, Pool.of(space))
    opt = HESSO(space, target_flops=0.5, total_steps=10)
    opt.target = budget  # the optimizer sees only the Budget interface
    assert opt.metrics()["activations_kept"] == pytest.approx(1.0)
