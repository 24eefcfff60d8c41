"""Real data, from scratch, no fine-tuning: HESSO keeping 50% of FLOPs on sklearn digits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from handspace import SmallCNN, slim_smallcnn, smallcnn_space

from trainonce.optim import HESSO

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
    space = smallcnn_space(model)
    bs = 64
    spe = (len(ytr) + bs - 1) // bs
    total = epochs * spe
    hp = dict(lr=0.1, momentum=0.9, weight_decay=5e-4)
    if prune:
        opt = HESSO(space, target_flops=0.5, total_steps=total, **hp)
    else:
        opt = torch.optim.SGD(model.parameters(), **hp)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(ytr), generator=gen)
        for k in range(spe):
            idx = perm[k * bs : (k + 1) * bs]
            opt.zero_grad()
            F.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
            opt.step()
            sched.step()
    return model.eval(), space, opt


def test_hesso_half_flops_matches_dense_on_digits():
    data = _data()
    xte, yte = data[2], data[3]
    dense, _, _ = _train(False, data)
    pruned, space, opt = _train(True, data)
    with torch.no_grad():
        acc_dense = (dense(xte).argmax(1) == yte).float().mean().item()
        logits = pruned(xte)
        acc_pruned = (logits.argmax(1) == yte).float().mean().item()
        m = opt.metrics()
        assert 0.49 <= m["flops_kept"] <= 0.5, m
        assert acc_dense > 0.95, acc_dense  # the recipe works at all
        assert acc_pruned >= acc_dense - 0.01, (acc_pruned, acc_dense)
        # zeroing is removing: the slim model predicts exactly the same classes
        assert torch.equal(space.zero_mask(), opt.zero)
        slim = slim_smallcnn(pruned, space, opt.zero).eval()
        assert torch.equal(slim(xte).argmax(1), logits.argmax(1))
        assert torch.allclose(slim(xte), logits, atol=1e-4)
        n_slim = sum(p.numel() for p in slim.parameters())
        assert n_slim == space.num_params(~opt.zero) < space.num_params()
