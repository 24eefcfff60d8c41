"""Real data, from scratch, no fine-tuning: the built-in ResNet8 on sklearn digits with ATO keeping
50% of FLOPs, against dense training with the same recipe; the slim model predicts the same.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import trainonce
from trainonce.data import load_data
from trainonce.optim import ATO
from trainonce.testing import fit, minibatches_per_epoch
from trainonce.zoo.resnet import ResNet8

pytest.importorskip("sklearn")


def _split():
    bundle = load_data("digits")
    xtr, ytr = bundle.train.tensors[:2]
    xte, yte = bundle.test.tensors[:2]
    perm = torch.randperm(len(ytr), generator=torch.Generator().manual_seed(0))
    n_held = max(1, len(ytr) // 20)  # 5% held out for the controller, as the CLI does
    held, rest = perm[:n_held], perm[n_held:]
    return (xtr[rest], ytr[rest]), (xtr[held], ytr[held]), (xte, yte)


def train(prune: bool, data, seed: int = 0, epochs: int = 10, target: float = 0.5, every: int = 2):
    (xtr, ytr), (xh, yh), _ = data
    torch.manual_seed(seed)
    model = ResNet8(num_classes=10, in_channels=xtr.shape[1])
    bs = 64
    total = epochs * minibatches_per_epoch(len(ytr), bs)
    hp = dict(lr=0.1, momentum=0.9, weight_decay=5e-4)
    space = None
    if prune:
        space = trainonce.analyze(model, xtr[:1])
        opt = ATO(space, target_flops=target, total_steps=total, controller_every=every,
                  loss_fn=lambda: F.cross_entropy(model(xh), yh), **hp)
    else:
        opt = torch.optim.SGD(model.parameters(), **hp)
    fit(model, opt, xtr, ytr, epochs, seed=seed, batch_size=bs)
    return model.eval(), space, opt


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_ato_half_flops_matches_dense_on_digits():
    data = _split()
    xte, yte = data[2]
    dense, _, _ = train(False, data)
    pruned, space, opt = train(True, data)
    acc_dense, acc_pruned = accuracy(dense, xte, yte), accuracy(pruned, xte, yte)
    keep = ~opt.zero
    kept = space.flops(keep) / space.flops()
    assert 0.49 <= kept <= 0.5, kept
    assert acc_dense > 0.95, acc_dense
    assert acc_pruned >= acc_dense - 0.01, (acc_pruned, acc_dense)
    m = opt.metrics()
    assert m["flops_kept"] == pytest.approx(kept) and m["phase"] == "training"
    assert torch.equal(space.zero_mask(), opt.zero)
    slim = trainonce.construct_subnet(pruned, space).eval()
    with torch.no_grad():
        assert torch.equal(slim(xte).argmax(1), pruned(xte).argmax(1))
    assert sum(p.numel() for p in slim.parameters()) == space.num_params(keep)
