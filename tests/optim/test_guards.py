"""No silent failures: unreachable targets, non-finite hyper-parameters and gradients, frozen
parameters, and metrics that report the weights as they are."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from handspace import SmallCNN
from runs import OPTIMIZERS, make_run, name, periods, target_kw, toy_batch, train_steps

import trainonce
from trainonce.optim import HESSO
from trainonce.optim.zigview import ext

SCHED = dict(total_steps=24, start_pruning_step=4, pruning_steps=12, pruning_periods=3)


def _partly_prunable():
    """SmallCNN where only conv3's output channels are prunable (~20% of the FLOPs)."""
    torch.manual_seed(0)
    model = SmallCNN((16, 16, 32))
    space = trainonce.analyze(model, torch.randn(1, 1, 8, 8), exclude=["conv1"])
    return model, space


def _least_kept(space, cost) -> float:
    """Every prunable group cut to one ZIG, everything else kept (computed from the groups)."""
    keep = ~space.prunable_mask
    for g in space.groups:
        if g.prunable:
            keep[g.offset] = True
    return cost(keep) / cost()


@pytest.mark.parametrize("kind", ["flops", "params"])
def test_unreachable_cost_target_is_refused_naming_the_bound(kind):
    model, space = _partly_prunable()
    cost = space.flops if kind == "flops" else space.num_params
    least = _least_kept(space, cost)
    assert 0.5 < least < 0.9  # the model can give up only part of its cost
    bound = f"{math.ceil(least * 1000) / 1000:.3f}"
    with pytest.raises(ValueError, match=rf"target_{kind}=0.5 cannot be reached.*>= {bound}"):
        HESSO(space, lr=0.05, total_steps=24, **{f"target_{kind}": 0.5})
    # the bound itself is accepted and met from below
    target = float(bound)
    opt = HESSO(space, lr=0.05, **SCHED, **{f"target_{kind}": target})
    train_steps(model, opt, 0, 24)
    assert least - 1e-9 <= opt.metrics()[f"{kind}_kept"] <= target


def test_unreachable_group_sparsity_is_refused():
    _, space = _partly_prunable()  # one prunable group of 32 ZIGs: at most 31 can go
    with pytest.raises(ValueError, match=r"target_group_sparsity=0.99 .* <= 0.968"):
        HESSO(space, total_steps=24, target_group_sparsity=0.99)
    HESSO(space, total_steps=24, target_group_sparsity=0.96)


@pytest.mark.parametrize("key", ["lr", "momentum", "weight_decay", "eps", "betas"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_hyperparameters_are_refused(key, bad):
    value = (bad, 0.999) if key == "betas" else bad
    with pytest.raises(ValueError, match="finite"):
        make_run(HESSO, target_flops=0.5, total_steps=10, **{key: value})


def _snapshot(model, opt):
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    state = {
        id(p): {k: v.clone() for k, v in s.items() if torch.is_tensor(v)}
        for p, s in opt.state.items()
    }
    return params, state


def _nan_step(model, opt, t, value=float("nan")):
    x, y = toy_batch(t)
    opt.zero_grad()
    was = model.training
    model.eval()  # leave BatchNorm's running stats as they were: only the step is under test
    torch.nn.functional.cross_entropy(model(x), y).backward()
    model.train(was)
    model.conv1.weight.grad[0, 0, 0, 0] = value
    return opt.step(lambda: torch.tensor(1.5))


def _sched(cls) -> dict:
    return {**SCHED, "pruning_periods": periods(cls, SCHED["pruning_periods"])}


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=name)
@pytest.mark.parametrize("variant,lr", [("sgd", 0.05), ("adam", 0.01)])
def test_non_finite_gradient_skips_the_step(cls, variant, lr):
    model, space, opt = make_run(
        cls, lr=lr, variant=variant, weight_decay=1e-3, **target_kw(cls), **_sched(cls)
    )
    train_steps(model, opt, 0, 18, leak=1e-3)  # zero groups exist, pruning over
    before = opt.metrics()
    assert before["group_sparsity"] > 0
    params, state = _snapshot(model, opt)
    with pytest.warns(RuntimeWarning, match="skipped"):
        assert float(_nan_step(model, opt, 18)) == 1.5  # the closure's loss still comes back
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        _nan_step(model, opt, 18, float("inf"))
    after_params, after_state = _snapshot(model, opt)
    for k, v in params.items():
        assert torch.equal(v, after_params[k]), k
    assert after_state.keys() == state.keys()
    for pid, s in state.items():
        for k, v in s.items():
            assert torch.equal(v, after_state[pid][k]), k
    m = opt.metrics()
    assert m["skipped_steps"] == 2 and m["step"] == before["step"] == 18
    assert m["group_sparsity"] == before["group_sparsity"]
    train_steps(model, opt, 18, 24, leak=1e-3)  # training goes on with the zeros held
    assert all(bool(p.isfinite().all()) for p in model.parameters())
    assert torch.equal(space.zero_mask(), opt.zero)
    assert opt.metrics()["skipped_steps"] == 2


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=name)
def test_skipped_step_mid_period_is_a_no_op(cls):
    """A skip inside a pruning period: the run then equals one without it, bit for bit."""
    kw = dict(lr=0.05, weight_decay=1e-3, target_flops=0.5, **_sched(cls))
    model, _, opt = make_run(cls, **kw)
    train_steps(model, opt, 0, 24)
    ref = {k: v.clone() for k, v in model.state_dict().items()}
    model2, _, opt2 = make_run(cls, **kw)
    train_steps(model2, opt2, 0, 9)
    with pytest.warns(RuntimeWarning):
        _nan_step(model2, opt2, 9)
    train_steps(model2, opt2, 9, 24)
    for k, v in model2.state_dict().items():
        assert torch.equal(v, ref[k]), k
    assert torch.equal(opt2.zero, opt.zero) and opt2.metrics()["skipped_steps"] == 1


def test_skipped_steps_survive_a_checkpoint():
    model, _, opt = make_run(HESSO, lr=0.05, target_group_sparsity=0.4, **SCHED)
    with pytest.warns(RuntimeWarning):
        _nan_step(model, opt, 0)
    _, _, opt2 = make_run(HESSO, lr=0.05, target_group_sparsity=0.4, **SCHED)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.metrics()["skipped_steps"] == 1


def test_metrics_report_the_weights_not_the_intent():
    model, space, opt = make_run(HESSO, lr=0.05, target_group_sparsity=0.4, **SCHED)
    train_steps(model, opt, 0, 20)
    n = int(opt.zero.sum())
    assert opt.metrics()["group_sparsity"] == pytest.approx(n / space.num_prunable_zigs)
    # a zero ZIG that is no longer zero (written from outside) no longer counts
    z = int(torch.nonzero(opt.zero)[0])
    one = torch.zeros_like(opt.zero)
    one[z] = True
    i = opt.view.with_zigs[0]
    while not opt.view.touches(i, ext(one, False)):
        i += 1
    p = opt.params[i]
    with torch.no_grad():
        p.masked_fill_(opt.view.multiplier(i, p, ext((~one).double(), 1.0)) == 0, float("nan"))
    m = opt.metrics()
    assert m["group_sparsity"] == pytest.approx((n - 1) / space.num_prunable_zigs)
    real = space.flops(~space.zero_mask()) / space.flops()
    assert m["flops_kept"] == pytest.approx(real)


def test_frozen_parameters_are_not_pruned_and_metrics_match_the_weights():
    torch.manual_seed(0)
    model, space, _ = make_run(HESSO, lr=0.05, target_group_sparsity=0.4, **SCHED)
    for p in (*model.stem.parameters(), *model.bn0.parameters()):  # a frozen first layer
        p.requires_grad_(False)  # "res" group: the stem's rows can never become zero
    res = next(g for g in space.groups if g.name == "res")
    with pytest.warns(UserWarning, match=r"8 ZIGs in 1 group.*\(res\).*stem\.weight, bn0"):
        opt = HESSO(space, lr=0.05, target_flops=0.6, **SCHED)
    assert not bool(opt.prunable[res.offset : res.offset + res.size].any())
    train_steps(model, opt, 0, 24, leak=1e-3)
    m = opt.metrics()
    real = space.flops(~space.zero_mask()) / space.flops()
    assert bool(space.zero_mask().any())
    assert m["flops_kept"] == pytest.approx(real) and real <= 0.6
    assert not bool(opt.zero[res.offset : res.offset + res.size].any())
    # what cannot be removed no longer counts towards a target
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="cannot be reached"):
        HESSO(space, lr=0.05, target_group_sparsity=0.95, **SCHED)


def test_check_finite_false_leaves_the_guard_to_the_caller():
    """Opting out (an AMP GradScaler already skips such steps): the step is taken, NaN and all,
    and nothing is counted."""
    model, space, opt = make_run(HESSO, lr=0.05, target_group_sparsity=0.4, check_finite=False,
                                 **SCHED)
    train_steps(model, opt, 0, 2)
    _nan_step(model, opt, 2)
    assert opt.metrics()["skipped_steps"] == 0
    assert not all(bool(p.isfinite().all()) for p in model.parameters())


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=name)
def test_model_parameters_instead_of_a_space_is_refused_with_the_way(cls):
    model = SmallCNN((8, 8, 16))
    with pytest.raises(TypeError, match=r"trainonce.analyze\(model, example_inputs\)"):
        kw = {"loss_fn": lambda: torch.zeros(())} if cls.needs_loss_fn else {}
        cls(model.parameters(), lr=0.1, target_flops=0.5, **kw)


@pytest.mark.parametrize("value", ["0.5", True])
def test_a_target_that_is_not_a_number_is_refused(value):
    space = trainonce.analyze(SmallCNN((8, 8, 16)), torch.randn(1, 1, 8, 8))
    with pytest.raises(TypeError, match="must be a number in"):
        HESSO(space, lr=0.1, target_flops=value, **SCHED)
