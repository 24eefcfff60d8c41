"""ATO: controller, masks, schedule, budget, exact zeros, metrics, bit-exact resume."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from handspace import SmallCNN
from runs import toy_batch, train_steps

import trainonce
from trainonce.optim import ATO
from trainonce.optim.ato_controller import Controller, eval_mask, train_mask


def _run(seed=0, total=60, target=0.5, **kw):
    torch.manual_seed(seed)
    model = SmallCNN((16, 16, 32))
    space = trainonce.analyze(model, toy_batch(0)[0][:1])
    xh, yh = toy_batch(-1, 64)
    kw.setdefault("loss_fn", lambda: F.cross_entropy(model(xh), yh))
    opt = ATO(space, lr=0.05, target_flops=target, total_steps=total, **kw)
    return model, space, opt


def test_controller_shapes_and_initial_masks():
    _, space, opt = _run()
    ctl = opt.controller
    blocks = [g for g in space.groups if g.prunable]
    assert ctl.embed.shape == (len(blocks), 64)
    e = ctl.embed
    assert torch.allclose(e @ e.T, torch.eye(len(blocks)), atol=1e-5)  # orthogonal inputs
    assert ctl.heads.shape == (sum(g.size for g in blocks), 256)
    assert ctl.gru.bidirectional and ctl.gru.hidden_size == 128
    logits = ctl()
    assert logits.shape == (space.num_zigs,)
    assert bool(eval_mask(logits, 3.0, 0.4).all())  # b = 3: masks start at "keep"
    assert opt.schedule.start == 6 and opt.schedule.end == 30
    # seeded: the same seed gives the same controller, another seed another one
    same = Controller(space, seed=0)
    other = Controller(space, seed=1)
    for a, b in zip(same.state_dict().values(), ctl.state_dict().values()):
        assert torch.equal(a, b)
    assert not torch.equal(other.heads, ctl.heads)


def test_straight_through_mask_is_exactly_hard_with_soft_gradient():
    logits = torch.randn(500, requires_grad=True, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    st, soft = train_mask(logits * 4 - 3, 3.0, 0.4, gen)
    assert set(st.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(st.detach(), (soft.detach() >= 0.5).float())
    assert 0 < int((st == 0).sum()) < 500
    (g_st,) = torch.autograd.grad(st.sum(), logits, retain_graph=True)
    (g_soft,) = torch.autograd.grad(soft.sum(), logits)
    assert torch.equal(g_st, g_soft)


def test_target_met_zeros_held_and_slim_equal():
    model, space, opt = _run()
    train_steps(model, opt, 0, 20)
    m = opt.metrics()
    assert m["phase"] == "pruning" and m["controller_loss"] == m["controller_loss"]  # finite
    assert {"soft_flops_kept", "hard_flops_kept", "mask_flips"} <= set(m)
    assert opt.metrics()["mask_flips"] == m["mask_flips"]  # reading has no side effect
    train_steps(model, opt, 20, 30)
    frozen = opt.zero.clone()
    flips = opt.metrics()["mask_flips"]
    assert flips >= int(frozen.sum()) and opt.metrics()["mask_flips"] == flips  # cumulative
    kept = space.flops(~frozen) / space.flops()
    assert 0.49 <= kept <= 0.5, kept
    assert torch.equal(space.zero_mask(), frozen)
    train_steps(model, opt, 30, 60, leak=1e-3)  # zeros held against a gradient
    assert torch.equal(space.zero_mask(), frozen) and torch.equal(opt.zero, frozen)
    m = opt.metrics()
    assert m["flops_kept"] == pytest.approx(kept) and m["hard_flops_kept"] == pytest.approx(kept)
    slim = trainonce.construct_subnet(model.eval(), space)  # raises if outputs differ
    x = toy_batch(99)[0]
    with torch.no_grad():
        assert torch.allclose(slim(x), model(x), atol=1e-5)


def test_controller_moves_mask_towards_target_and_proximal_shrinks():
    model, space, opt = _run(total=80, target=0.3, controller_every=1)
    train_steps(model, opt, 0, 39)
    off = ~opt.mask & opt.prunable
    assert bool(off.any())  # the controller turned ZIGs off
    sq = space.zig_sq_norms()
    assert float(sq[off].mean()) < float(sq[~off & opt.prunable].mean())


def test_budget_ramp_lowers_the_controller_target_from_one_to_the_budget():
    _, _, opt = _run(total=100, target=0.3, budget_ramp=0.5)
    s = opt.schedule
    shares = [opt.share_target_at(t) for t in range(s.start, s.end)]
    half = (s.end - s.start) // 2
    assert shares[0] > 0.95 and shares[half - 1] == pytest.approx(opt.share_target)
    assert all(a > b for a, b in zip(shares[: half - 1], shares[1:half]))
    assert set(shares[half:]) == {opt.share_target}
    _, _, flat = _run(total=100, target=0.3)
    assert {flat.share_target_at(t) for t in range(s.start, s.end)} == {flat.share_target}
    with pytest.raises(ValueError, match="budget_ramp"):
        _run(budget_ramp=1.5)


def test_a_controller_far_from_the_budget_at_the_freeze_warns():
    model, _, opt = _run(total=40, target=0.3, controller_lr=1e-9)
    sched = torch.optim.lr_scheduler.StepLR(opt, 100)  # wraps opt.step: one more frame
    with pytest.warns(UserWarning, match="controller's mask kept 100.0% of the FLOPs") as rec:
        train_steps(model, opt, 0, 40)
        sched.step()
    assert rec[0].filename.endswith("runs.py")  # points at the caller's opt.step()
    m = opt.metrics()
    assert m["controller_kept_at_freeze"] == 1.0 and m["flops_kept"] <= 0.3


def test_freeze_removes_kept_zigs_that_are_already_all_zero():
    model, space, opt = _run(target=0.9)
    s = opt.schedule
    train_steps(model, opt, 0, s.end - 1)  # the next step freezes the mask
    assert (s.end - 1 - s.start) % opt.controller_every != 0  # no controller update on it
    logits = opt.controller().detach().double()
    idx = int(torch.argmax(torch.where(opt.prunable & opt.mask, logits, -float("inf"))))
    dead = torch.zeros(space.num_zigs, dtype=torch.bool)
    dead[idx] = True
    space.set_zero(dead)  # the proximal step zeroed it; the mask has it on again
    opt.param_groups[0]["lr"] = 0.0  # the freeze step moves no weight (nor a proximal step)
    train_steps(model, opt, s.end - 1, s.end)
    assert opt.metrics()["phase"] == "training"
    assert bool(opt.zero[idx]) and opt.metrics()["flops_kept"] <= 0.9


def test_resume_mid_controller_phase_is_bitwise():
    model, space, opt = _run(seed=3, total=40, controller_every=2)
    train_steps(model, opt, 0, 11)  # controller phase: steps 4..19
    assert opt.metrics()["phase"] == "pruning"
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    train_steps(model, opt, 11, 40)
    model2, _, opt2 = _run(seed=7, total=40, controller_every=2)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=False)
    model2.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["opt"])
    train_steps(model2, opt2, 11, 40)
    for (k, v), v2 in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(v, v2), k
    assert torch.equal(opt.zero, opt2.zero) and torch.equal(opt.mask, opt2.mask)
    for a, b in zip(opt.controller.parameters(), opt2.controller.parameters()):
        assert torch.equal(a, b)


def test_clear_errors():
    with pytest.raises(ValueError, match="loss_fn"):
        _run(loss_fn=None)
    torch.manual_seed(0)
    model = SmallCNN((8, 8, 16))
    space = trainonce.analyze(model, toy_batch(0)[0][:1])
    with pytest.raises(ValueError, match="target_flops or target_params"):
        ATO(space, target_group_sparsity=0.5, total_steps=50, loss_fn=lambda: 0)
    with pytest.raises(ValueError, match="pruning_periods"):
        ATO(space, target_flops=0.5, total_steps=50, loss_fn=lambda: 0, pruning_periods=3)
    with pytest.raises(ValueError, match="pruning_periods"):  # phases given, no total_steps
        ATO(space, target_flops=0.5, start_pruning_step=2, pruning_steps=15, loss_fn=lambda: 0,
            pruning_periods=3)
    # phases given: still one controller phase of all 15 steps (it used to end after 10)
    opt = ATO(space, target_flops=0.5, start_pruning_step=2, pruning_steps=15, loss_fn=lambda: 0)
    assert (opt.schedule.periods, opt.schedule.end) == (1, 17)


def test_cli_builds_ato_with_its_loss_fn():
    from trainonce.cli.setup import RunConfig, build_optimizer

    model, space, _ = _run()
    xh, yh = toy_batch(-2, 32)
    loss_fn = lambda: F.cross_entropy(model(xh), yh)  # noqa: E731
    opt = build_optimizer(RunConfig(optimizer="ato", target=0.4), space, 50, loss_fn)
    assert type(opt) is ATO and opt.loss_fn is loss_fn and opt.target.value == 0.4
    assert (opt.schedule.start, opt.schedule.end) == (5, 25)
    with pytest.raises(ValueError, match="target_flops or target_params"):
        cfg = RunConfig(optimizer="ato", target_kind="group_sparsity")
        build_optimizer(cfg, space, 50, loss_fn)


def test_proximal_step_is_the_group_soft_threshold():
    model, space, opt = _run(momentum=0.0)
    s = opt.schedule
    train_steps(model, opt, 0, s.start + 1)  # the controller's first update is at s.start
    assert (opt.steps_taken - s.start) % opt.controller_every != 0  # none on the next step
    g = next(g for g in space.groups if g.prunable and g.size == 32)  # conv3 -> fc channels
    off = torch.zeros(space.num_zigs, dtype=torch.bool)
    off[g.offset : g.offset + 8] = True  # a quarter of the group: r = 0.25
    opt.mask = ~off
    before = space.zig_sq_norms().sqrt()
    step = float(before[off].min()) * 4 * 1.001  # r = 0.25: shrinks the smallest past zero
    lr = opt.param_groups[0]["lr"]
    opt.lambdas = (step / lr, step / lr)  # the proximal step is lr * lambda
    untouched = {n: p.detach().clone() for n, p in model.named_parameters() if "conv3" not in n
                 and "bn3" not in n and "fc" not in n}
    for p in model.parameters():  # zero gradients, no momentum: the variant step moves nothing
        p.grad = torch.zeros_like(p)
    opt.step()
    after = space.zig_sq_norms().sqrt()
    want = (before - step * 0.25).clamp(min=0)
    assert torch.allclose(after[off], want[off], rtol=1e-5, atol=1e-7)
    assert bool((after[off] == 0).any()) and bool((after[off] > 0).any())
    assert torch.allclose(after[g.offset + 8 : g.offset + 32], before[g.offset + 8 : g.offset + 32])
    for n, p in model.named_parameters():
        if n in untouched:
            assert torch.equal(p, untouched[n]), n


def test_cli_default_optimizer_follows_the_budget():
    import argparse

    from trainonce.cli import run as cli_run
    from trainonce.cli.setup import DEFAULT_OPTIMIZER_BY_KEPT, OPTIMIZERS

    parser = argparse.ArgumentParser()
    cli_run.add_parser(parser.add_subparsers())

    def chosen(*argv: str) -> str:
        return cli_run._config(parser.parse_args(["run", "--out", "x", *argv])).optimizer

    assert DEFAULT_OPTIMIZER_BY_KEPT[-1][0] >= 1.0  # every share kept has a default
    lower = 0.0
    for upper, name in DEFAULT_OPTIMIZER_BY_KEPT:
        assert name in OPTIMIZERS
        inside = min(upper, 0.99) if upper > lower else None
        if inside is not None:  # both ends of each range, FLOPs and params alike
            assert chosen("--target-flops", str(inside)) == name
            assert chosen("--target-params", str(inside)) == name
            assert chosen("--target-flops", str(lower + 1e-3)) == name
        lower = upper
    assert chosen("--target-flops", "0.05") == "hspg"  # ATO lost at 10% in 8 epochs
    assert chosen("--target-flops", "0.5") == "hspg"
    assert chosen() == chosen("--target-flops", "0.5")  # the default target
    assert chosen("--target-group-sparsity", "0.5") == "hesso"  # ATO takes no group sparsity
    assert chosen("--target-sparsity", "0.5") == "hesso"  # the flag's name before 0.2
    assert chosen("--target-flops", "0.05", "--optimizer", "ato") == "ato"  # given wins
