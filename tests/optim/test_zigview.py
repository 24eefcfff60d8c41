"""The ZIG row view and the budget selection against the search space's own accounting."""

from __future__ import annotations

import torch
from handspace import SmallCNN, smallcnn_space

import trainonce
from trainonce.optim.budgets import Flops, GroupSparsity
from trainonce.optim.saliency import CRITERIA, ZigStats, saliency_scores
from trainonce.optim.zigview import ZigView, ext
from trainonce.zoo.resnet import ResNet8


def _space():
    torch.manual_seed(0)
    model = SmallCNN((8, 8, 16))
    return model, smallcnn_space(model)


def test_norms_and_scaling_match_space():
    model, space = _space()
    params = list(model.parameters())
    view = ZigView(space, params)
    sq = torch.zeros(space.num_zigs + 1, dtype=torch.float64)
    with torch.no_grad():
        for i in view.with_zigs:
            view.add_sq(sq, i, params[i])
    sq = sq[:-1]
    assert torch.allclose(sq, space.zig_sq_norms(), rtol=1e-5)
    zero = torch.zeros(space.num_zigs, dtype=torch.bool)
    zero[[0, 3, 17, 30]] = True
    with torch.no_grad():
        for i in view.with_zigs:
            params[i].mul_(view.multiplier(i, params[i], ext((~zero).double(), 1.0)))
    assert torch.equal(space.zero_mask(), zero)
    # numel: a "res" channel owns stem row (9) + bn0 (2) + conv2 row (8*9) + bn2 (2)
    # + conv1 column (8*9) + conv3 column (16*9)
    assert view.numel[0] == 9 + 2 + 72 + 2 + 72 + 144


def test_group_count_selection_exact_and_keeps_one_per_group():
    _, space = _space()
    score = torch.rand(space.num_zigs, dtype=torch.float64)
    none = torch.zeros(space.num_zigs, dtype=torch.bool)
    chosen = GroupSparsity(0.9).select(space, 0.9, score, none)
    assert int(chosen.sum()) == round(0.9 * space.num_zigs)
    # what may be removed: every prunable ZIG but the best-scoring one of each group
    removable = torch.zeros(space.num_zigs, dtype=torch.bool)
    for g in space.groups:
        assert not bool(chosen[g.offset : g.offset + g.size].all()), g.name
        if g.prunable:
            removable[g.offset : g.offset + g.size] = True
            removable[g.offset + int(score[g.offset : g.offset + g.size].argmax())] = False
    assert not bool((chosen & ~removable).any())
    # lowest scores first inside it: at half the ZIGs, every chosen ZIG scores below every
    # removable one that stays
    half = GroupSparsity(0.5).select(space, 0.5, score,
                  torch.zeros(space.num_zigs, dtype=torch.bool))
    assert not bool((half & ~removable).any()) and bool((removable & ~half).any())
    assert score[half].max() < score[removable & ~half].min()


def test_flops_selection_meets_budget_from_below():
    _, space = _space()
    for frac in (0.7, 0.5, 0.3):
        score = torch.rand(space.num_zigs, dtype=torch.float64)
        chosen = Flops(frac).select(space, frac, score, torch.zeros_like(score).bool())
        kept = space.flops(~chosen) / space.flops()
        assert frac - 0.01 <= kept <= frac, (frac, kept)


def test_saliency_prefers_large_and_aligned_groups():
    n = 4
    stats = ZigStats(
        sq_norm=torch.tensor([1.0, 4.0, 4.0, 9.0], dtype=torch.float64),
        dir_sq_norm=torch.ones(n, dtype=torch.float64),
        dot=torch.tensor([-1.0, -2.0, 2.0, 3.0], dtype=torch.float64),
        numel=torch.ones(n, dtype=torch.float64),
    )
    cand = torch.ones(n, dtype=torch.bool)
    s = saliency_scores(stats, {name: 0.2 for name in CRITERIA}, cand)
    assert s.argmin() == 0 and s.argmax() == 3
    only_cos = saliency_scores(stats, {"cosine": 1.0}, cand)
    assert only_cos[1] < only_cos[2]  # moving away from zero = more important
    custom = saliency_scores(stats, {lambda st: -st.norm: 1.0}, cand)
    assert custom.argmax() == 0


def _bcast(view, i, p, values):
    """The reference: per-dim values broadcast over the parameter's shape."""
    return [
        values[vec].view([p.shape[d] if d == dim else 1 for d in range(p.dim())])
        for dim, vec in view.entries[i]
    ]


def test_streaming_paths_match_broadcast_definitions():
    """Factors (mul, mul_, scale_), the cross-dim sums and the summed penalty scaling against
    plain broadcasting, on contiguous and channels_last (non-contiguous) tensors."""
    torch.manual_seed(0)
    model = ResNet8(num_classes=10, in_channels=1, width=8)
    space = trainonce.analyze(model, torch.randn(2, 1, 12, 12))
    view = ZigView(space, list(model.parameters()))
    params = [p.detach() for p in model.parameters()]
    g = torch.Generator().manual_seed(5)
    values = ext(torch.rand(space.num_zigs, generator=g, dtype=torch.float64) + 0.5, 1.0)
    multi = [i for i in view.with_zigs if len(view.entries[i]) == 2]
    assert multi and any(params[i].dim() == 4 for i in multi)  # convs with in and out ZIGs
    for i in view.with_zigs:
        p0 = params[i]
        layouts = [p0.clone()]
        if p0.dim() == 4:
            layouts.append(p0.clone().to(memory_format=torch.channels_last))
        bc = [b.to(p0.dtype) for b in _bcast(view, i, p0, values)]
        prod = bc[0] if len(bc) == 1 else bc[0] * bc[1]
        summed = bc[0] if len(bc) == 1 else bc[0] + bc[1]
        for t in layouts:
            fac = view.factors(i, t, values)
            torch.testing.assert_close(fac.mul(t), t * prod)
            torch.testing.assert_close(fac.mul_(t.clone()), t * prod)
            torch.testing.assert_close(
                fac.scale_(t.clone(), -0.3),
                t * (1 - 0.3 * bc[0]) * (1 - 0.3 * bc[1] if len(bc) == 2 else 1),
            )
            scaled = t.clone()
            view.scale_by_sum_(i, scaled, values, -0.1, range(len(bc)))
            torch.testing.assert_close(scaled, t * (1 - 0.1 * summed))
            # cross-dim terms: sum over z's slice of x^2 * (values of the other dims)
            out = torch.zeros(space.num_zigs + 1, dtype=torch.float64)
            view.add_mixed(out, i, t, values)
            ref = torch.zeros_like(out)
            for k, (dim, vec) in enumerate(view.entries[i]):
                w = sum(b for j, b in enumerate(bc) if j != k) if len(bc) > 1 else 0 * bc[0]
                per_pos = (t * t * w).transpose(0, dim).reshape(t.shape[dim], -1).sum(1)
                ref.index_add_(0, vec, per_pos.double())
            torch.testing.assert_close(out, ref)
