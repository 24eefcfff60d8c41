"""Bad input gets a clear error naming the cause."""

import pytest
import torch
from torch import nn

import trainonce


def small():
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))


def test_wrong_input_shape_names_the_inputs():
    with pytest.raises(trainonce.TraceError, match="example inputs do not fit"):
        trainonce.analyze(small(), torch.randn(2, 5, 8, 8))


def test_data_dependent_control_flow_is_explained():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)

        def forward(self, x):
            y = self.a(x)
            if y.sum() > 0:
                return y * 2
            return y

    with pytest.raises(trainonce.TraceError, match="control flow depends on tensor values"):
        trainonce.analyze(Branchy(), torch.randn(2, 4))


def test_nothing_prunable_says_why():
    with pytest.raises(trainonce.NothingPrunableError, match="reaches a model output"):
        trainonce.analyze(nn.Linear(4, 3), torch.randn(2, 4))


def test_bad_example_inputs_type():
    with pytest.raises(TypeError, match="example_inputs must be"):
        trainonce.analyze(small(), "not a tensor")


def test_unknown_exclude_name():
    with pytest.raises(ValueError, match="exclude names not found"):
        trainonce.analyze(small(), torch.randn(1, 3, 8, 8), exclude=["nope"])


def test_exclude_keeps_a_module_whole():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(),
                          nn.Conv2d(8, 4, 3))
    space = trainonce.analyze(model, torch.randn(1, 3, 9, 9), exclude=["0"])
    first = next(g for g in space.groups if any(m.param == "0.weight" and m.dim == 0
                                                for m in g.members))
    assert not first.prunable and first.reason == "excluded by the user"
    assert any(g.prunable for g in space.groups)


def test_construct_needs_an_analysed_space():
    model = small()
    space = trainonce.SearchSpace(model, [])
    with pytest.raises(ValueError, match="made by trainonce.analyze"):
        trainonce.construct_subnet(model, space)
