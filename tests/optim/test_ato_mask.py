"""ATO's generic mask application and differentiable cost on the torchvision and HF zoo."""

from __future__ import annotations

import pytest
import torch
from equivalence import make_zeroing_visible
from hf_models import bert

import trainonce
from trainonce.optim.ato_mask import MaskApplier, kept_share, resource_loss
from trainonce.optim.budgets import Flops


def _resnet18():
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return tv.models.resnet18(num_classes=10), torch.randn(2, 3, 32, 32)


def _mobilenet():
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return tv.models.mobilenet_v2(num_classes=10), torch.randn(2, 3, 32, 32)


def _bert():
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    return bert()


def _run(model, inputs):
    with torch.no_grad():
        if isinstance(inputs, dict):
            return model(**inputs).logits
        return model(inputs)


def _masked(app, mask, inputs):
    with torch.no_grad():
        if isinstance(inputs, dict):
            return app(mask, **inputs).logits
        return app(mask, inputs)


@pytest.mark.parametrize("make", [_resnet18, _bert])
def test_ones_mask_is_identity_and_hard_mask_is_zeroing(make):
    model, inputs = make()
    make_zeroing_visible(model, inputs)
    space = trainonce.analyze(model, inputs)
    app = MaskApplier(space)
    ref = _run(model, inputs)
    assert torch.equal(_masked(app, torch.ones(space.num_zigs), inputs), ref)
    gen = torch.Generator().manual_seed(0)
    drop = (torch.rand(space.num_zigs, generator=gen) < 0.3) & space.prunable_mask
    masked = _masked(app, (~drop).float(), inputs)
    assert not torch.allclose(masked, ref)  # the mask does something
    before = {k: v.clone() for k, v in model.state_dict().items()}
    space.set_zero(drop)
    assert torch.equal(masked, _run(model, inputs))
    model.load_state_dict(before)
    # run(): a callable that calls the model itself sees the masked weights
    assert torch.equal(app.run((~drop).float(), lambda: _run(model, inputs)), masked)
    assert torch.equal(_run(model, inputs), ref)  # parameters untouched afterwards


@pytest.mark.parametrize("make", [_resnet18, _mobilenet, _bert])
def test_soft_cost_equals_exact_cost_on_hard_masks(make):
    model, inputs = make()
    space = trainonce.analyze(model, inputs)
    gen = torch.Generator().manual_seed(1)
    for share in (0.0, 0.2, 0.6):
        keep = ~((torch.rand(space.num_zigs, generator=gen) < share) & space.prunable_mask)
        for kind, exact in (("flops", space.flops), ("params", space.num_params)):
            soft = space.costs.soft(kind, keep.double())
            assert float(soft) == exact(keep), (kind, share)


def test_soft_cost_is_differentiable_and_matches_products():
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 5), torch.nn.ReLU(),
        torch.nn.Linear(5, 2),
    )
    space = trainonce.analyze(model, torch.randn(3, 4))
    m = torch.rand(space.num_zigs, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    m.requires_grad_(True)
    # 3 samples: 4*k1 + k1*k2 + k2*2, k = sums of the soft masks of each hidden layer
    k1, k2 = m[:6].sum(), m[6:11].sum()
    want = 3 * (4 * k1 + k1 * k2 + k2 * 2)
    got = space.costs.soft("flops", m)
    assert torch.allclose(got, want)
    (g,) = torch.autograd.grad(got, m)
    (w,) = torch.autograd.grad(want, m)
    assert torch.allclose(g, w)
    assert torch.autograd.gradcheck(lambda x: space.costs.soft("flops", x), (m,))
    share, fixed = kept_share(space, Flops(0.5), m)
    assert 0 < float(share.detach()) < 1 and 0 <= fixed < 1
    # the share runs from 0 (every prunable ZIG off) to 1 (dense)
    off = (~space.prunable_mask).double()
    assert float(kept_share(space, Flops(0.5), off)[0]) == pytest.approx(0.0, abs=1e-12)
    assert float(kept_share(space, Flops(0.5), torch.ones_like(off))[0]) == pytest.approx(1.0)


def test_resource_loss_shape():
    p = 0.5
    at = resource_loss(torch.tensor(p), p)
    assert float(at) == pytest.approx(4 * torch.log(torch.tensor(p / (p - 0.005))).item())
    hi = resource_loss(torch.tensor(0.7, requires_grad=True), p)
    assert float(hi) == pytest.approx(4 * torch.log(torch.tensor(0.7 / p)).item())
    r = torch.tensor(0.3, requires_grad=True)
    lo = resource_loss(r, p)
    assert float(lo) == pytest.approx(4 * torch.log(torch.tensor(p / 0.3)).item())
    lo.backward()
    assert float(r.grad) < 0  # more kept FLOPs lowers the loss below the target
    with pytest.raises(ValueError):
        resource_loss(torch.tensor(0.5), 0.001)
