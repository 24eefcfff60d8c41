"""save/load: safetensors + JSON recipe, no pickles, exact round trip."""

import json

import pytest
import torch
from equivalence import make_zeroing_visible
from handwritten import CASES
from torch import nn

import trainonce


def factory():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 6, 3),
                         nn.Flatten(), nn.Linear(6 * 4 * 4, 5))


def test_round_trip_eager(tmp_path):
    model, x = factory(), torch.randn(2, 3, 8, 8)
    make_zeroing_visible(model, x)
    space = trainonce.analyze(model, x)
    space.zero_random_groups(0.5, 0)
    slim = trainonce.construct_subnet(model, space).eval()
    out = trainonce.save(slim, tmp_path / "run")
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors", "recipe.json"]
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["kind"] == "eager" and recipe["removed"]
    back = trainonce.load(out, factory).eval()
    assert torch.equal(slim(x), back(x))


def test_round_trip_program_fallback(tmp_path):
    cls, x = CASES["concat_slice"]
    make = lambda: (torch.manual_seed(0), cls())[1]  # noqa: E731
    model = make()
    make_zeroing_visible(model, x)
    space = trainonce.analyze(model, x)
    space.zero_random_groups(0.5, 0)
    with pytest.warns(UserWarning, match="slim traced program"):
        slim = trainonce.construct_subnet(model, space)
    trainonce.save(slim, tmp_path)
    back = trainonce.load(tmp_path, make)
    assert torch.equal(slim(x)[0], back(x)[0])


def test_load_rejects_other_architecture(tmp_path):
    model, x = factory(), torch.randn(2, 3, 8, 8)
    space = trainonce.analyze(model, x)
    space.zero_random_groups(0.5, 0)
    trainonce.save(trainonce.construct_subnet(model, space), tmp_path)
    with pytest.raises(ValueError, match="holds a torch.nn.modules.container.Sequential"):
        trainonce.load(tmp_path, lambda: nn.Linear(2, 2))


def test_save_needs_a_slim_model(tmp_path):
    with pytest.raises(ValueError, match="construct_subnet"):
        trainonce.save(nn.Linear(2, 2), tmp_path)
    assert not any(tmp_path.iterdir())
