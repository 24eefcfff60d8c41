"""`trainonce.measure_latency` / `LatencyTable`: predictions, files, refusals. Whether a
prediction matches the real slim model is a timing, measured side by side in
benchmarks/bench_latency_predict.py, not here: on this shared machine a 35%-tolerance check of a
1.6 ms model still failed under load."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from latency_tables import proportional
from torch import nn

import trainonce
from trainonce.zoo import build_model

THREADS = 1


@pytest.fixture(scope="module")
def measured():
    torch.manual_seed(0)
    model = build_model("resnet8").model.train()
    x = torch.randn(1, 1, 28, 28)
    space = trainonce.analyze(model, x)
    state = copy.deepcopy(model.state_dict())
    table = trainonce.measure_latency(space, threads=THREADS)
    assert model.training and all(m.training for m in model.modules()), "modes changed"
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items()), "state changed"
    return model, x, space, table


def _masks(space, n=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    prunable = space.prunable_mask
    return [(torch.rand(space.num_zigs, generator=gen) < p) & prunable
            for p in (0.0, 0.3, 0.6, 0.9)[:n]]


def test_dense_prediction_is_the_measured_dense_latency(measured):
    _, _, space, table = measured
    assert table.predict(space) == table.dense == table.cost(None) > 0
    keep_all = torch.ones(space.num_zigs, dtype=torch.bool)
    assert table.cost(keep_all) == pytest.approx(table.dense, rel=1e-12)
    assert table.meta["batch_size"] == 1 and table.threads == THREADS
    assert 0.5 <= table.alpha <= 2.0 and "calibration" in table.meta


def test_cost_equals_soft_on_binary_masks_and_soft_has_gradients(measured):
    _, _, space, table = measured
    costs = []
    for zero in _masks(space):
        keep = ~zero
        soft = table.soft(keep.double())
        assert soft.dtype == torch.float64
        assert float(soft) == pytest.approx(table.cost(keep), rel=1e-12, abs=0)
        costs.append(table.cost(keep))
    # removing more ZIGs never costs more: on a table whose times grow with the width (the
    # measured one is noise at 1.6 ms a forward on this shared machine)
    det = proportional(table)
    det_costs = [det.cost(~zero) for zero in _masks(space)]
    assert det_costs == sorted(det_costs, reverse=True) and det_costs[-1] < det.dense
    mask = torch.full((space.num_zigs,), 0.6, dtype=torch.float64, requires_grad=True)
    table.soft(mask).backward()
    assert torch.isfinite(mask.grad).all() and float(mask.grad.abs().sum()) > 0
    assert float(mask.grad[~space.prunable_mask].abs().sum()) == 0  # only prunable ZIGs count


def test_marginal_orders_zigs_by_saved_seconds(measured):
    _, _, space, table = measured
    m = table.marginal()
    assert m.shape == (space.num_zigs,) and m.dtype == torch.float64
    assert bool((m >= 0).all()) and float(m[~space.prunable_mask].sum()) == 0
    # the saved time is of the order of the dense time's reducible part
    assert 0 < float(m.sum()) < 2 * table.dense


def test_save_load_round_trip(measured, tmp_path):
    _, _, space, table = measured
    path = table.save(tmp_path / "resnet8.latency.json")
    again = trainonce.LatencyTable.load(path, device="cpu", threads=THREADS)
    assert again.meta == table.meta and again.dense == table.dense
    for zero in _masks(space):
        assert again.predict(space, zero) == table.predict(space, zero)
    assert torch.equal(again.marginal(), table.marginal())


@pytest.mark.parametrize("field,value,kwargs,match", [
    ("torch", "1.0.0", {}, "torch 1.0.0"),
    ("device_name", "another CPU", {"device": "cpu"}, "another CPU"),
    ("threads", THREADS + 7, {"threads": THREADS}, "threads"),
])
def test_load_refuses_another_torch_device_or_thread_count(measured, tmp_path, field, value,
                                                           kwargs, match):
    _, _, _, table = measured
    data = table.to_dict()
    data["meta"] = {**data["meta"], field: value}
    path = tmp_path / "t.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=match) as info:
        trainonce.LatencyTable.load(path, **kwargs)
    assert "measure_latency" in str(info.value)


def test_a_table_of_another_model_is_refused(measured):
    _, _, _, table = measured
    other = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
    space = trainonce.analyze(other, torch.randn(1, 1, 12, 12))
    with pytest.raises(ValueError, match="another model"):
        table.predict(space)


def test_erasing_spaces_are_refused():
    model = build_model("resnet8").model
    space = trainonce.analyze(model, torch.randn(1, 1, 28, 28), mode="erase")
    with pytest.raises(ValueError, match="mode='prune'"):
        trainonce.measure_latency(space)


def test_cache_is_reused_and_batch_size_retraces(measured, tmp_path):
    _, _, space, _ = measured
    path = tmp_path / "cache.json"
    kw = {"threads": THREADS, "batch_size": 2, "levels": 3, "calibrate": False}
    first = trainonce.measure_latency(space, cache=path, **kw)
    second = trainonce.measure_latency(space, cache=path, **kw)
    assert first.batch_size == 2 and first.meta["timed"] > 0
    assert second.meta["timed"] == 0 and second.meta["reused"] > 0
    zero = _masks(space)[2]
    assert first.cost(~zero) - first.dense == pytest.approx(second.cost(~zero) - second.dense)


def test_another_dtype_times_a_copy_and_leaves_the_model(measured):
    model, _, space, _ = measured
    table = trainonce.measure_latency(space, threads=THREADS, dtype=torch.float64, levels=2,
                                      calibrate=False)
    assert table.meta["dtype"] == "float64" and table.dense > 0
    assert all(p.dtype == torch.float32 for p in model.parameters())
