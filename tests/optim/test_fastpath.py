"""The fast step paths against plain definitions: torch.optim in warm-up, torch.optim + zeroing
after pruning (index fills instead of masks), fused per-ZIG reductions against brute force.
"""

from __future__ import annotations

import pytest
import torch
from runs import make_run, train_steps

from trainonce.optim import DHSPG, HESSO
from trainonce.optim.zigview import DimMatrix, ext

CONFIGS = [
    ("sgd", dict(lr=0.05, momentum=0.9, weight_decay=1e-3)),
    ("sgd", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    ("sgd", dict(lr=0.05, momentum=0.0, weight_decay=1e-3)),
    ("adam", dict(lr=0.01, weight_decay=1e-3)),
    ("adamw", dict(lr=0.01, weight_decay=1e-2)),
]


def _torch_opt(variant: str, params, hp: dict):
    hp = dict(hp)
    if variant == "sgd":
        return torch.optim.SGD(params, foreach=False, **hp)
    cls = torch.optim.Adam if variant == "adam" else torch.optim.AdamW
    return cls(params, foreach=False, **hp)


@pytest.mark.parametrize("cls", [HESSO, DHSPG])
@pytest.mark.parametrize("variant,hp", CONFIGS)
def test_warmup_is_bitwise_torch(cls, variant, hp):
    sched = dict(target_group_sparsity=0.5, total_steps=40, start_pruning_step=20, pruning_steps=8)
    model, _, opt = make_run(cls, variant=variant, **hp, **sched)
    ref_model, _, _ = make_run(cls, variant=variant, **hp, **sched)
    ref = _torch_opt(variant, ref_model.parameters(), hp)
    train_steps(model, opt, 0, 6, leak=1e-3)
    train_steps(ref_model, ref, 0, 6, leak=1e-3)
    for (k, a), b in zip(model.state_dict().items(), ref_model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("variant,hp", CONFIGS)
def test_training_step_is_torch_step_then_zeros(variant, hp):
    """After pruning: one step == torch's step on the same state, then zero slices set to 0."""
    sched = dict(target_group_sparsity=0.5, total_steps=20, start_pruning_step=2, pruning_steps=4)
    model, space, opt = make_run(HESSO, variant=variant, **hp, **sched)
    train_steps(model, opt, 0, 8, leak=1e-3)
    assert opt.metrics()["phase"] == "training" and bool(opt.zero.any())
    ref_model, _, _ = make_run(HESSO, variant=variant, **hp, **sched)
    ref_model.load_state_dict(model.state_dict())
    ref = _torch_opt(variant, ref_model.parameters(), hp)
    for p, q in zip(model.parameters(), ref_model.parameters(), strict=True):
        ref.state[q] = {k: v.clone() for k, v in opt.state[p].items()}
    train_steps(model, opt, 8, 9, leak=1e-3)
    train_steps(ref_model, ref, 8, 9, leak=1e-3)
    keep_ext = ext((~opt.zero).double(), 1.0)
    params, ref_params = list(model.parameters()), list(ref_model.parameters())
    with torch.no_grad():
        for i, q in enumerate(ref_params):
            tensors = [q] + [v for k, v in ref.state[q].items() if k != "step"]
            if opt.view.entries[i]:
                m = opt.view.multiplier(i, q, keep_ext) == 0
                for t in tensors:
                    t.masked_fill_(m, 0.0)
            assert torch.equal(params[i], q), i
            for k, v in opt.state[params[i]].items():
                assert torch.equal(v, ref.state[q][k]), (i, k)


def _dim_sum(view, i, p, values_ext):
    """Reference: sum over ``params[i]``'s ZIG dims of ``values_ext[vec]`` broadcast."""
    return sum(
        values_ext[vec].to(p.dtype).view([p.shape[d] if d == dim else 1 for d in range(p.dim())])
        for dim, vec in view.entries[i]
    )


def test_fused_reductions_match_brute_force():
    model, space, opt = make_run(HESSO, lr=0.05, target_group_sparsity=0.5, total_steps=10)
    g = torch.Generator().manual_seed(3)
    params = [p.detach() for p in model.parameters()]
    dirs = {i: torch.randn(p.shape, generator=g) for i, p in enumerate(params)}
    with torch.no_grad():
        stats = opt.zig_stats(dirs)
    sq, dsq, dot = stats.sq_norm, stats.dir_sq_norm, -stats.dot
    v = opt.view
    for z in range(space.num_zigs):
        onehot = torch.zeros(space.num_zigs, dtype=torch.float64)
        onehot[z] = 1.0
        w = {i: _dim_sum(v, i, params[i], ext(onehot, 0.0)) for i in v.with_zigs}
        ref_sq = sum(float((params[i] ** 2 * w[i]).sum()) for i in w)
        ref_dot = sum(float((params[i] * dirs[i] * w[i]).sum()) for i in w)
        ref_dsq = sum(float((dirs[i] ** 2 * w[i]).sum()) for i in w)
        assert sq[z].item() == pytest.approx(ref_sq, rel=1e-5, abs=1e-6)
        assert dot[z].item() == pytest.approx(ref_dot, rel=1e-5, abs=1e-5)
        assert dsq[z].item() == pytest.approx(ref_dsq, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("with_hold", [False, True])
def test_two_pass_momentum_matches_torch_order(with_hold):
    """The pruning phase's SGD momentum (``g + m*buf`` then ``+ wd*x``) is torch's update up to
    rounding, and keeps held slices at exactly 0."""
    from trainonce.optim.variant import Scratch, direction
    from trainonce.optim.zigview import Factors

    torch.manual_seed(0)
    group = dict(lr=0.1, momentum=0.9, nesterov=False, weight_decay=1e-2)
    ps = []
    for _ in range(2):
        p = torch.randn(6, 4, 3, 3)
        p.grad = torch.randn_like(p)
        ps.append(p)
    ps[1].copy_(ps[0])
    ps[1].grad = ps[0].grad.clone()
    hold = None
    if with_hold:
        keep = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
        hold = Factors(ps[0].shape, [(DimMatrix.of(ps[0].shape, 0), keep)])
        for p in ps:
            hold.mul_(p.data)
    states = [{"momentum_buffer": hold.mul(ps[0].grad) if hold else ps[0].grad.clone()}]
    states.append({"momentum_buffer": states[0]["momentum_buffer"].clone()})
    for p, st, fast in zip(ps, states, (False, True), strict=True):
        direction("sgd", p, st, group, Scratch(), apply=True, hold=hold, fast=fast)
    torch.testing.assert_close(ps[1], ps[0], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(states[1]["momentum_buffer"], states[0]["momentum_buffer"])
    if with_hold:
        assert bool((ps[1][[1, 4]] == 0).all()) and bool(
            (states[1]["momentum_buffer"][[1, 4]] == 0).all()
        )
