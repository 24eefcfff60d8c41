"""Half-space optimizers between statistics steps: the variant step, then every penalised slice
scaled by max(1 - lr*c, 1/2) per ZIG dim with the last measured coefficients."""

from __future__ import annotations

import pytest
import torch
from runs import make_run, toy_batch

from trainonce.optim import DHSPG, HSPG
from trainonce.optim.zigview import ext

SCHED = dict(total_steps=30, start_pruning_step=4, pruning_steps=12, pruning_periods=1)


def _grads(model, t: int) -> None:
    x, y = toy_batch(t)
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()


@pytest.mark.parametrize("cls", [DHSPG, HSPG])
def test_step_between_statistics_is_variant_step_then_shrink(cls):
    hp = dict(lr=0.05, momentum=0.9, weight_decay=1e-3)
    model, space, opt = make_run(cls, target_group_sparsity=0.4, stats_every=4, **hp, **SCHED)
    for t in range(6):  # step 4 is a statistics step, 5 and 6 are not
        _grads(model, t)
        opt.step()
    assert opt.is_stats_step(4) and not opt.is_stats_step(6)
    _grads(model, 6)
    before = [p.detach().clone() for p in opt.params]
    bufs = [opt.state[p]["momentum_buffer"].clone() for p in opt.params]
    coef = opt.penalty_coefficients(6)
    factor_ext = ext((1 - hp["lr"] * coef).clamp(min=0.5), 1.0)
    opt.step()
    for i, p in enumerate(opt.params):
        buf = p.grad + hp["momentum"] * bufs[i] + hp["weight_decay"] * before[i]
        want = before[i] - hp["lr"] * buf
        if opt.view.entries[i]:
            want = want * opt.view.multiplier(i, p, factor_ext)
        assert torch.allclose(p.detach(), want, rtol=1e-5, atol=1e-7), i
    assert bool((coef > 0).any())  # something was penalised
    # the shrink never more than halves a slice, and the statistics step measured them all
    assert float(factor_ext.min()) >= 0.5


def test_statistics_every_step_and_every_k_steps_meet_the_target():
    for k in (1, 3):
        model, space, opt = make_run(DHSPG, lr=0.05, target_group_sparsity=0.4, stats_every=k,
                                     **SCHED)
        for t in range(30):
            _grads(model, t)
            opt.step()
        assert int(space.zero_mask().sum()) == round(0.4 * space.num_prunable_zigs)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_stats_every_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="stats_every"):
        make_run(HSPG, target_group_sparsity=0.4, stats_every=bad, **SCHED)


@pytest.mark.parametrize("cls", [DHSPG, HSPG])
def test_progressive_zeroes_period_by_period_and_meets_the_target(cls):
    sched = dict(total_steps=40, start_pruning_step=4, pruning_steps=24, pruning_periods=4)
    model, space, opt = make_run(cls, lr=0.05, target_group_sparsity=0.4, progressive=True,
                                 **sched)
    want = round(0.4 * space.num_prunable_zigs)
    zeros = []
    for t in range(40):
        _grads(model, t)
        opt.step()
        zeros.append(int(opt.zero.sum()))
    # after each period's end at least that period's cumulative share is zero, never more
    # than the target, and the target is met at the end of pruning and stays
    for period in range(3):
        end = 4 + 6 * (period + 1) - 1
        assert zeros[end] >= round(want * (period + 1) / 4) - 1, (period, zeros)
    assert max(zeros) == want and zeros[-1] == want
    assert int(space.zero_mask().sum()) == want
