"""Example inputs that nest dicts, lists and tuples (``forward(self, batch)`` with a Hugging
Face-style batch dict): analysis, the slim model, save/load, exact outputs; and the errors that
say what to pass, raised by `analyze`, never after training."""

from __future__ import annotations

import contextlib

import pytest
import torch
from equivalence import make_zeroing_visible
from torch import nn

import trainonce


class BatchNet(nn.Module):
    """``forward(batch)`` reads ``batch["x"]`` and a mask ``batch["mask"]`` over positions."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 8, 3, padding=1)
        self.mid = nn.Conv1d(8, 8, 1)
        self.head = nn.Linear(8, 3)

    def forward(self, batch: dict) -> torch.Tensor:
        h = torch.relu(self.mid(torch.relu(self.conv(batch["x"]))))
        m = batch["mask"].unsqueeze(1).to(h.dtype)
        return self.head((h * m).sum(2) / m.sum(2).clamp_min(1))


class ProgramBatchNet(BatchNet):
    """The same, reshaping to a size kept as a Python int: the slim model is the program."""

    def forward(self, batch: dict) -> torch.Tensor:
        h = torch.relu(self.mid(torch.relu(self.conv(batch["x"]))))
        m = batch["mask"].unsqueeze(1).to(h.dtype)
        pooled = (h * m).sum(2) / m.sum(2).clamp_min(1)
        return self.head(pooled.reshape(-1, 8))  # 8: stale after a cut


def make(cls):
    torch.manual_seed(0)
    return cls()


def batch(n: int = 2) -> dict:
    torch.manual_seed(1)
    return {"x": torch.randn(n, 4, 10), "mask": torch.rand(n, 10) > 0.3}


@pytest.mark.parametrize("cls", [BatchNet, ProgramBatchNet])
def test_dict_argument_end_to_end(cls, tmp_path):
    model, b = make(cls), batch()
    make_zeroing_visible(model, (b,))
    space = trainonce.analyze(model, (b,))
    space.zero_random_groups(0.5, 0)
    with torch.no_grad():
        zeroed = model.eval()(b)
    with pytest.warns(UserWarning) if cls is ProgramBatchNet else contextlib.nullcontext():
        slim = trainonce.construct_subnet(model, space)
    assert slim.trainonce_recipe.kind == ("program" if cls is ProgramBatchNet else "eager")
    assert sum(p.numel() for p in slim.parameters()) < sum(p.numel() for p in cls().parameters())
    trainonce.save(slim, tmp_path / "slim")
    back = trainonce.load(tmp_path / "slim", lambda: make(cls))
    other = batch(5)  # another batch size too
    with torch.no_grad():
        assert torch.allclose(slim(b), zeroed, atol=1e-6)
        assert torch.equal(back(b), slim(b))
        assert torch.equal(back(other), slim.eval()(other))


def test_nested_lists_and_tuples_are_recorded():
    from trainonce.subnet.recipe import Recipe
    from trainonce.trace import input_specs

    inputs = ({"a": [torch.zeros(2, 3), (torch.ones(2, dtype=torch.long), 3)], "b": None},)
    recipe = Recipe("eager", "m.M", {}, [], input_specs(inputs, {"k": [1.5, "s"]}),
                    weights_sha256="0" * 64)
    again = Recipe.from_json(recipe.to_json())
    args, kwargs = again.example_inputs()
    assert kwargs == {"k": [1.5, "s"]}
    (arg,) = args
    assert arg["b"] is None and arg["a"][1][1] == 3 and isinstance(arg["a"][1], tuple)
    assert arg["a"][0].shape == (2, 3) and arg["a"][1][0].dtype == torch.long


def test_dict_as_whole_example_says_to_pass_a_tuple():
    with pytest.raises(TypeError, match=r"pass it inside a tuple: trainonce.analyze\(model, "
                                        r"\(batch,\)\)") as info:
        trainonce.analyze(BatchNet(), batch())
    assert "no parameter 'x', 'mask'" in str(info.value)


def test_unrecordable_input_is_refused_at_analyze():
    class Opaque:
        pass

    class Net(BatchNet):
        def forward(self, batch, extra):
            return super().forward(batch)

    with pytest.raises(TypeError, match="cannot record an example input of type Opaque"):
        trainonce.analyze(Net(), (batch(), Opaque()))
