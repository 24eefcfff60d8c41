"""target_latency on every optimizer: the run ends with the table's predicted latency at most
the target (within one unit's granularity), and the slim model is exact."""

from __future__ import annotations

import warnings

import pytest
import torch
from latency_tables import proportional
from runs import OPTIMIZERS, name

import trainonce
from trainonce.optim.budgets import Latency
from trainonce.zoo import build_model

TARGET = 0.6


@pytest.fixture(scope="module")
def resnet8_table():
    torch.manual_seed(0)
    model = build_model("resnet8").model
    x = torch.randn(1, 1, 28, 28)
    space = trainonce.analyze(model, x)
    measured = trainonce.measure_latency(space, threads=1, calibrate=False)
    return proportional(measured)


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=name)
def test_latency_target_is_met(cls, resnet8_table):
    torch.manual_seed(0)
    model = build_model("resnet8").model
    x = torch.randn(1, 1, 28, 28)
    space = trainonce.analyze(model, x)
    fixed = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    extra = {"loss_fn": lambda: model(fixed).square().mean()} if cls.needs_loss_fn else {}
    total = 20
    opt = cls(space, lr=0.05, target_latency=TARGET, latency_table=resnet8_table,
              total_steps=total, **extra)
    assert isinstance(opt.target, Latency)
    gen = torch.Generator().manual_seed(0)
    for _ in range(total):
        xb = torch.randn(8, 1, 28, 28, generator=gen)
        loss = model(xb).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    kept = opt.metrics()["latency_kept"]
    assert TARGET - 0.05 <= kept <= TARGET + 1e-9, kept
    zero = space.zero_mask()
    predicted = resnet8_table.predict(space, zero) / resnet8_table.dense
    assert predicted == pytest.approx(kept)
    trainonce.construct_subnet(model, space)  # verified against the trained model


def test_latency_target_without_a_table_measures_one_and_says_so(resnet8_table):
    torch.manual_seed(0)
    model = build_model("resnet8").model
    space = trainonce.analyze(model, torch.randn(1, 1, 28, 28))
    with pytest.raises(ValueError, match="measured for another model"):
        other = trainonce.analyze(torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(),
                                                      torch.nn.Linear(8, 2)), torch.randn(2, 4))
        trainonce.HESSO(other, target_latency=0.5, latency_table=resnet8_table, total_steps=10)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        opt = trainonce.HESSO(space, target_latency=0.5, total_steps=10)
    assert any("measuring this model's latency on the CPU at batch 1" in str(w.message)
               for w in rec)
    assert opt.target.table.batch_size == 1 and opt.target.table.device == "cpu"
