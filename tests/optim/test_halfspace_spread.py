"""The half-space optimizers' G_p keeps every layer alive: a plain 32/64/128 CNN on sklearn digits
at target_group_sparsity=0.5 keeps a share of every layer and most of the dense accuracy."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import trainonce
from trainonce.optim import DHSPG, HSPG
from trainonce.optim.halfspace import spread_guard
from trainonce.testing import fit, minibatches_per_epoch

sklearn = pytest.importorskip("sklearn")


class PlainCNN(nn.Module):
    """conv-BN-ReLU x3 (32/64/128 channels), max-pool after the first two, GAP, fc."""

    def __init__(self, widths=(32, 64, 128)) -> None:
        super().__init__()
        layers, c = [], 1
        for k, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            if k < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            c = w
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def _digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0 - 0.3) / 0.4
    y = torch.tensor(d.target)
    tr, te = train_test_split(range(len(y)), test_size=0.25, random_state=0, stratify=d.target)
    return x[tr], y[tr], x[te], y[te]


@pytest.mark.parametrize("cls", [DHSPG, HSPG])
def test_group_sparsity_keeps_every_layer(cls):
    xtr, ytr, xte, yte = _digits()
    torch.manual_seed(0)
    model = PlainCNN()
    space = trainonce.analyze(model, xtr[:1])
    epochs, bs = 8, 64
    spe = minibatches_per_epoch(len(ytr), bs)
    opt = cls(
        space,
        lr=0.05,
        momentum=0.9,
        weight_decay=1e-4,
        target_group_sparsity=0.5,
        total_steps=epochs * spe,
    )
    fit(model, opt, xtr, ytr, epochs, seed=0, batch_size=bs)
    m = opt.metrics()
    assert m["group_sparsity"] == pytest.approx(0.5, abs=0.005)
    kept = {
        g.name: int((~opt.zero[g.offset : g.offset + g.size]).sum()) / g.size
        for g in space.groups
        if g.prunable
    }
    assert len(kept) == 3
    # before the guard DHSPG kept 1 of 64 channels of the middle layer (1.4% of the FLOPs)
    assert min(kept.values()) >= 0.25, kept
    assert m["flops_kept"] >= 0.15, m["flops_kept"]
    model.eval()
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).float().mean().item()
    assert acc >= 0.93, (acc, kept)


def test_spread_guard_moves_a_groups_excess_behind_the_rest():
    # two groups of 4 ZIGs; group 0 holds the 4 lowest scores
    score = torch.tensor([0.1, 0.2, 0.3, 0.4, 1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    gid = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    prunable = torch.ones(8, dtype=torch.bool)
    alive = prunable.clone()
    out = spread_guard(score, alive, gid, prunable, keep_share=0.5)
    # each group may lose 2 of 4: the two most salient of each go behind every other
    # candidate, in score order, so group 0's excess still comes before group 1's
    order = torch.sort(out, stable=True).indices.tolist()
    assert order == [0, 1, 4, 5, 2, 3, 6, 7]
    assert torch.equal(out[[0, 1, 4, 5]], score[[0, 1, 4, 5]])
    # ZIGs already removed count: with ZIG 0 gone, group 0 may lose one more
    alive[0] = False
    out = spread_guard(score, alive, gid, prunable, keep_share=0.5)
    assert out[1] == score[1] and out[2] > out[5] and out[3] > out[2]
    # keep_share 0 is the identity
    assert torch.equal(spread_guard(score, prunable, gid, prunable, 0.0), score)
