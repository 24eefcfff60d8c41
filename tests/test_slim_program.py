"""The slim traced program (the fallback for models whose forward cannot follow a cut) keeps
the model's interface: output structure, any batch size, and a warning in train mode."""

from __future__ import annotations

import pytest
import torch
from equivalence import make_zeroing_visible, rel_diff
from torch import nn

import trainonce
from trainonce.subnet.interface import SlimProgram
from trainonce.trace import tensor_leaves


class AttentionDict(nn.Module):
    """nn.MultiheadAttention (its forward keeps its width) returning a dict with a tuple."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        seq = self.stem(x).flatten(2).transpose(1, 2)
        out, _ = self.attn(seq, seq, seq, need_weights=False)
        pooled = out.mean(1)
        return {"logits": self.head(pooled), "extra": (pooled.sum(-1), 3)}


class AttentionTensor(AttentionDict):
    def forward(self, x):
        return super().forward(x)["logits"]


def _slim(model, x, sparsity=0.5):
    make_zeroing_visible(model, x)
    space = trainonce.analyze(model, x)
    space.zero_random_groups(sparsity, seed=0)
    with pytest.warns(UserWarning, match="returning the slim traced program"):
        slim = trainonce.construct_subnet(model, space)
    assert isinstance(slim, SlimProgram) and slim.fixed_batch is None
    return slim


@pytest.mark.parametrize("batch", [1, 2])
def test_output_structure_and_any_batch_size(batch):
    torch.manual_seed(0)
    model, x = AttentionDict(), torch.randn(batch, 3, 4, 4)
    slim = _slim(model, x)
    for n in (1, 3, 7):
        xn = torch.randn(n, 3, 4, 4)
        with torch.no_grad():
            ref, got = model.eval()(xn), slim.eval()(xn)
        assert isinstance(got, dict) and list(got) == ["logits", "extra"]
        assert isinstance(got["extra"], tuple) and got["extra"][1] == 3
        assert got["logits"].shape == (n, 5)
        assert rel_diff(tensor_leaves(ref), tensor_leaves(got)) <= 1e-5


def test_a_tensor_stays_a_tensor_and_train_mode_warns():
    torch.manual_seed(0)
    model, x = AttentionTensor(), torch.randn(2, 3, 4, 4)
    slim = _slim(model, x)
    assert isinstance(slim.eval()(x), torch.Tensor)
    slim.train()
    with pytest.warns(UserWarning, match=r"stem.1 \(BatchNorm2d\) in eval mode"):
        slim(x)


def test_saved_program_reloads_at_another_batch_size(tmp_path):
    torch.manual_seed(0)
    model, x = AttentionTensor(), torch.randn(2, 3, 4, 4)
    slim = _slim(model, x)
    trainonce.save(slim, tmp_path / "slim")
    again = trainonce.load(tmp_path / "slim", AttentionTensor)
    x5 = torch.randn(5, 3, 4, 4)
    with torch.no_grad():
        assert torch.allclose(again.eval()(x5), slim.eval()(x5), atol=1e-6)


def test_a_model_output_keeps_its_type():
    transformers = pytest.importorskip("transformers")
    from dataclasses import dataclass

    @dataclass
    class Out(transformers.utils.ModelOutput):
        logits: torch.Tensor | None = None
        hidden: torch.Tensor | None = None

    class Net(AttentionDict):
        def forward(self, x):
            out = super().forward(x)
            return Out(logits=out["logits"])

    torch.manual_seed(0)
    model, x = Net(), torch.randn(2, 3, 4, 4)
    slim = _slim(model, x)
    got = slim.eval()(torch.randn(3, 3, 4, 4))
    assert type(got) is Out and got.hidden is None and got.logits.shape == (3, 5)
