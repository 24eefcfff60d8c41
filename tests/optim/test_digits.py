"""Real data and real analysis: HESSO keeping 50% of FLOPs on sklearn digits, with the space from
`trainonce.analyze` and the slim model from `trainonce.construct_subnet`; HESSO on resnet18.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from handspace import SmallCNN
from torch import nn

import trainonce
from trainonce.optim import HESSO
from trainonce.testing import fit, minibatches_per_epoch

sklearn = pytest.importorskip("sklearn")


def _data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0 - 0.3) / 0.4
    y = torch.tensor(d.target)
    tr, te = train_test_split(range(len(y)), test_size=0.25, random_state=0, stratify=d.target)
    return x[tr], y[tr], x[te], y[te]


def _train(prune: bool, data, seed: int = 0, epochs: int = 15):
    xtr, ytr, _, _ = data
    torch.manual_seed(seed)
    model = SmallCNN((32, 32, 64))
    space = trainonce.analyze(model, xtr[:1]) if prune else None
    bs = 64
    total = epochs * minibatches_per_epoch(len(ytr), bs)
    hp = dict(lr=0.1, momentum=0.9, weight_decay=5e-4)
    if prune:
        opt = HESSO(space, target_flops=0.5, total_steps=total, **hp)
    else:
        opt = torch.optim.SGD(model.parameters(), **hp)
    fit(model, opt, xtr, ytr, epochs, seed=seed, batch_size=bs)
    return model.eval(), space, opt


def _macs(model: nn.Module, x: torch.Tensor) -> int:
    """MACs of every Conv2d/Linear for one sample, counted by hooks (independent of the space)."""
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        w = mod.weight
        per_out = w[0].numel() if isinstance(mod, nn.Conv2d) else w.shape[1]
        total += out[0].numel() * per_out

    hooks = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    with torch.no_grad():
        model(x[:1])
    for h in hooks:
        h.remove()
    return total


def test_hesso_half_flops_matches_dense_on_digits():
    data = _data()
    xte, yte = data[2], data[3]
    dense, _, _ = _train(False, data)
    pruned, space, opt = _train(True, data)
    keep = ~opt.zero
    with torch.no_grad():
        acc_dense = (dense(xte).argmax(1) == yte).float().mean().item()
        logits = pruned(xte)
        acc_pruned = (logits.argmax(1) == yte).float().mean().item()
    kept = space.flops(keep) / space.flops()
    assert abs(kept - 0.5) <= 0.005 and kept <= 0.5, kept
    assert opt.metrics()["flops_kept"] == pytest.approx(kept)
    assert acc_dense > 0.95, acc_dense  # the recipe works at all
    assert acc_pruned >= acc_dense - 0.01, (acc_pruned, acc_dense)
    # zeroing is removing: the slim model predicts exactly the same classes on every image
    assert torch.equal(space.zero_mask(), opt.zero)
    slim = trainonce.construct_subnet(pruned, space).eval()
    with torch.no_grad():
        assert torch.equal(slim(xte).argmax(1), logits.argmax(1))
    n_slim = sum(p.numel() for p in slim.parameters())
    assert n_slim == space.num_params(keep) < 0.6 * space.num_params()
    # an independent count of the slim model's MACs agrees with the space's cost model
    assert _macs(slim, xte) == space.flops(keep) and _macs(pruned, xte) == space.flops()


def test_hesso_on_analysed_resnet18_slims():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    space = trainonce.analyze(model, torch.randn(1, 3, 32, 32))
    opt = HESSO(space, lr=0.01, target_group_sparsity=0.3, total_steps=6, pruning_periods=2)
    g = torch.Generator().manual_seed(0)
    for _ in range(6):
        x, y = torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 10, (4,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    assert opt.metrics()["phase"] == "training"
    assert int(space.zero_mask().sum()) == round(0.3 * space.num_prunable_zigs)
    slim = trainonce.construct_subnet(model.eval(), space)  # raises if outputs differ
    n_slim = sum(p.numel() for p in slim.parameters())
    assert n_slim == space.num_params(~opt.zero) < 0.9 * space.num_params()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(slim(x), model(x), atol=1e-4)
