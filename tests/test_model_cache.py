"""The suite's session cache of analysed models (model_cache.py) hands out what it built."""

import pytest
import torch


def test_the_session_cache_analyses_once_and_restores_the_weights():
    pytest.importorskip("torchvision")
    from model_cache import AnalysedModels

    cache = AnalysedModels()
    model, _, space = cache.get("resnet18", 32)
    saved = model.fc.weight.detach().clone()
    space.zero_random_groups(0.5, 0)
    assert int(space.zero_mask().sum()) > 0
    again, _, same = cache.get("resnet18", 32)
    assert again is model and same is space and cache.builds == 1
    assert torch.equal(model.fc.weight, saved)
    assert int(space.zero_mask().sum()) == 0  # every zeroed ZIG is back
