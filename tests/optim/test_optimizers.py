"""Behaviour shared by every optimizer: schedule, exact zeros, state, resume, targets."""

from __future__ import annotations

import io

import pytest
import torch
from handspace import slim_smallcnn, smallcnn_space
from runs import OPTIMIZERS, make_run, name, periods, train_steps

from trainonce.optim import DHSPG, HESSO, HSPG
from trainonce.optim.budgets import GroupSparsity, budget_kind

VARIANTS = [("sgd", 0.05), ("adam", 0.01), ("adamw", 0.01)]


def _state_zero_norm(opt, zero: torch.Tensor) -> float:
    """Largest |entry| of params and optimizer state inside the ZIGs flagged ``zero``."""
    from trainonce.optim.zigview import ext

    keep_ext = ext((~zero).double(), 1.0)
    worst = 0.0
    for i in opt.view.with_zigs:
        p = opt.params[i]
        m = opt.view.multiplier(i, p, keep_ext) == 0
        for t in [p] + [v for k, v in opt.state[p].items() if k != "step"]:
            sel = t.detach().masked_select(m.expand_as(t))
            if sel.numel():
                worst = max(worst, float(sel.abs().max()))
    return worst


# Counts zero ZIGs against a group-sparsity target over 3 pruning periods: that schedule is not
# the one of an optimizer without either (ATO keeps a FLOPs/params share and zeroes at the end
# of its one controller phase; test_ato.py tests its schedule, the contracts below all of them).
PERIODIC = [
    c for c in OPTIMIZERS if GroupSparsity in c.budgets and periods(c, 3) == 3
]


@pytest.mark.parametrize("cls", PERIODIC, ids=name)
@pytest.mark.parametrize("variant,lr", VARIANTS)
def test_zeros_on_schedule_and_held(cls, variant, lr):
    total = 30
    model, space, opt = make_run(
        cls,
        lr=lr,
        variant=variant,
        weight_decay=1e-3,
        target_group_sparsity=0.4,
        total_steps=total,
        start_pruning_step=6,
        pruning_steps=12,
        pruning_periods=3,
    )
    target_count = round(0.4 * space.num_prunable_zigs)
    seen = []
    for t in range(total):
        train_steps(model, opt, t, t + 1, clip=5.0, leak=1e-3)
        n_zero = int(space.zero_mask().sum())
        seen.append(n_zero)
        assert torch.equal(space.zero_mask(), opt.zero), f"step {t}: optimizer/model disagree"
        if t < 6:
            assert n_zero == 0, f"{cls.__name__} zeroed groups during warm-up (step {t})"
        if t >= 6 + 12 - 1:
            assert n_zero == target_count, (t, n_zero, target_count)
        assert _state_zero_norm(opt, opt.zero) == 0.0
    # non-decreasing: zero groups stay zero
    assert all(a <= b for a, b in zip(seen[:-1], seen[1:], strict=True))
    if cls is HESSO:  # progressive: one third of the target at each period end
        assert seen[6 + 4 - 1] == round(0.4 * space.num_prunable_zigs / 3)
        assert seen[6 + 4 - 2] == 0
    m = opt.metrics()
    assert m["phase"] == "training" and m["step"] == total
    assert m["group_sparsity"] == pytest.approx(target_count / space.num_prunable_zigs)
    assert m["norm_redundant"] == 0.0 and m["norm_important"] > 0


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=name)
@pytest.mark.parametrize("variant,lr,shape", [("sgd", 0.05, "torch"), ("adamw", 0.01, "torch"),
                                              ("sgd", 0.05, "old")])
def test_resume_is_bitwise(cls, variant, lr, shape):
    """``shape`` "torch": torch's {"state", "param_groups"}, the optimizer's own state inside
    param_groups[0]; "old": checkpoints written before, with it as a top-level "trainonce"."""
    kw = dict(
        lr=lr,
        variant=variant,
        weight_decay=1e-3,
        target_flops=0.5,
        total_steps=24,
        start_pruning_step=4,
        pruning_steps=12,
        pruning_periods=periods(cls, 3),
    )
    model, space, opt = make_run(cls, **kw)
    train_steps(model, opt, 0, 24, leak=1e-3)
    ref = {k: v.clone() for k, v in model.state_dict().items()}

    model1, _, opt1 = make_run(cls, **kw)
    train_steps(model1, opt1, 0, 9, leak=1e-3)  # mid-period 2 of 3 (ATO: mid-phase)
    buf = io.BytesIO()
    sd = opt1.state_dict()
    assert set(sd) == {"state", "param_groups"} and "trainonce" in sd["param_groups"][0]
    if shape == "old":
        sd["trainonce"] = sd["param_groups"][0].pop("trainonce")
    torch.save({"model": model1.state_dict(), "opt": sd}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    model2, _, opt2 = make_run(cls, seed=123, **kw)  # different init: everything from ckpt
    model2.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["opt"])
    assert opt2.steps_taken == 9 and "trainonce" not in opt2.param_groups[0]
    train_steps(model2, opt2, 9, 24, leak=1e-3)
    for k, v in model2.state_dict().items():
        assert torch.equal(v, ref[k]), f"{cls.__name__}: {k} differs after resume"
    assert torch.equal(opt2.zero, opt.zero)


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=name)
@pytest.mark.parametrize("kind", ["flops", "params"])
def test_cost_target_met_within_one_percent(cls, kind):
    assert budget_kind(kind) in cls.budgets  # every optimizer takes a FLOPs/params share
    total = 20
    model, space, opt = make_run(
        cls, widths=(32, 32, 64), lr=0.05, total_steps=total, **{f"target_{kind}": 0.5}
    )
    train_steps(model, opt, 0, total)
    m = opt.metrics()
    kept = m[f"{kind}_kept"]
    assert 0.49 <= kept <= 0.5 + 1e-9, kept
    # zeroing is removing: the slim model computes the same function
    model.eval()
    slim = slim_smallcnn(model, space, opt.zero).eval()
    x = torch.randn(5, 1, 8, 8)
    assert torch.allclose(slim(x), model(x), atol=1e-5)
    # the kept share is the slim model's own cost, re-analysed from scratch
    slim_space = smallcnn_space(slim)
    dense = space.flops() if kind == "flops" else space.num_params()
    slim_cost = slim_space.flops() if kind == "flops" else slim_space.num_params()
    assert slim_cost == pytest.approx(kept * dense, rel=1e-9)
    if kind == "params":
        assert sum(p.numel() for p in slim.parameters()) == pytest.approx(kept * dense)


def test_default_schedule_is_progressive():
    """Only a target and total_steps: nothing zero at step 1, target reached gradually."""
    model, space, opt = make_run(HESSO, lr=0.05, target_group_sparsity=0.5, total_steps=40)
    counts = []
    for t in range(40):
        train_steps(model, opt, t, t + 1)
        counts.append(int(space.zero_mask().sum()))
    assert counts[0] == 0 and counts[4] == 0
    distinct = sorted(set(counts))
    assert len(distinct) >= 4, counts  # several periods
    assert counts[-1] == round(0.5 * space.num_prunable_zigs)
    assert counts.index(counts[-1]) <= 0.7 * 40


@pytest.mark.parametrize("cls", [HESSO, DHSPG, HSPG])
def test_lr_scheduler_and_param_group_lr(cls):
    model, space, opt = make_run(cls, lr=0.05, target_group_sparsity=0.3, total_steps=10)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.0)
    train_steps(model, opt, 0, 1)
    sched.step()  # lr = 0: warm-up steps change nothing
    before = {k: v.clone() for k, v in model.named_parameters()}
    train_steps(model, opt, 1, 2)
    for k, v in model.named_parameters():
        assert torch.equal(v, before[k]), k


def test_clear_errors():
    for kw in [
        {},
        {"target_flops": 0.5, "target_params": 0.5},
        {"target_flops": 1.5},
        {"target_group_sparsity": 0.0},
    ]:
        with pytest.raises(ValueError, match="target"):
            make_run(HESSO, total_steps=10, **kw)
    with pytest.raises(ValueError, match="total_steps"):
        make_run(HESSO, target_flops=0.5)
    with pytest.raises(ValueError, match="variant"):
        make_run(HESSO, target_flops=0.5, total_steps=10, variant="rmsprop")
    with pytest.raises(ValueError, match="after total_steps"):
        make_run(HESSO, target_flops=0.5, total_steps=10, start_pruning_step=8, pruning_steps=5)
    with pytest.raises(ValueError, match="saliency"):
        make_run(HESSO, target_flops=0.5, total_steps=10, saliency_weights={"nope": 1.0})
