"""Model and dataset resolution: built-ins, torchvision / timm names, module:function."""

import pytest
import torch

from trainonce.data import load_data
from trainonce.zoo import build_model


def test_builtin_data():
    b = load_data("digits")
    assert b.input_shape == (1, 8, 8) and b.num_classes == 10
    assert len(b.train) + len(b.test) == 1797
    x, y = b.train[0]
    assert x.dtype == torch.float32 and int(y) in range(10)


def test_user_data_function():
    b = load_data("datafns:small_digits")
    assert len(b.train) == 256 and b.input_shape == (1, 8, 8)


def test_builtin_and_factory_models():
    m = build_model("resnet8", 3, 1)
    assert m.model(torch.randn(2, 1, 28, 28)).shape == (2, 3)
    f = build_model("factories:tiny_cnn", 4, 2)
    assert f.source == "factory" and f.model(torch.randn(2, 2, 8, 8)).shape == (2, 4)
    with pytest.raises(ValueError, match="returned int"):
        build_model("factories:not_a_model")
    with pytest.raises(ValueError, match="has no callable"):
        build_model("factories:missing")


def test_torchvision_and_timm_names():
    tv = build_model("resnet18", 10, 1)
    assert tv.source == "torchvision" and tv.in_channels == 3
    tm = build_model("timm:resnet10t", 10, 1)
    assert tm.source == "timm" and tm.in_channels == 1
    assert tm.model.eval()(torch.randn(1, 1, 32, 32)).shape == (1, 10)
