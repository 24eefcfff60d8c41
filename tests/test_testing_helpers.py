"""trainonce.testing: the shared in-memory training loop of the tests and benchmarks."""

from __future__ import annotations

import torch
from torch import nn

from trainonce.testing import fit, minibatches, minibatches_per_epoch


def test_minibatches_cover_every_sample_once_per_epoch_reshuffled():
    batches = list(minibatches(10, 2, seed=3, batch_size=4))
    assert [len(b) for b in batches] == [4, 4, 2] * 2 and minibatches_per_epoch(10, 4) == 3
    first, second = torch.cat(batches[:3]), torch.cat(batches[3:])
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(10))
    assert not torch.equal(first, second)
    assert all(torch.equal(a, b) for a, b in zip(batches, minibatches(10, 2, 3, 4)))


def test_fit_learns_with_a_cosine_rate_and_returns_eval_mode():
    torch.manual_seed(0)
    x = torch.randn(256, 2)
    y = (x[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    before = (model(x).argmax(1) == y).float().mean()
    out = fit(model, opt, x, y, epochs=5, batch_size=32)
    assert out is model and not model.training
    assert opt.param_groups[0]["lr"] < 1e-6  # the cosine reached its end with the run
    assert (model(x).argmax(1) == y).float().mean() > max(0.95, float(before))
