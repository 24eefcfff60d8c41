"""What `analyze` marks prunable is removable: the patterns random-architecture fuzzing found
failing only at construction (or crashing analysis) are now exact or pinned, and refused with a
clear error where they cannot be analysed at all."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from equivalence import check_slim, make_zeroing_visible
from torch import nn

import trainonce


class Stem(nn.Module):
    def __init__(self, c: int = 8):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU())

    def forward(self, x):
        return self.conv(x)


class SlicedParameter(nn.Module):
    """A parameter sliced before use: a position embedding cut to the input size, a weight
    cut to its first rows (ViT-style models, hand-written heads)."""

    def __init__(self):
        super().__init__()
        self.stem = Stem(8)
        self.pos = nn.Parameter(torch.randn(1, 8, 10, 10))
        self.w = nn.Parameter(torch.randn(10, 8))

    def forward(self, x):
        y = self.stem(x) + self.pos[:, :, : x.shape[2], : x.shape[3]]
        return F.linear(y.mean((2, 3)), self.w[:6])


class SizeOneSlices(nn.Module):
    """Channels read one by one: a size-1 slice, narrow and split into size-1 pieces."""

    def __init__(self):
        super().__init__()
        self.stem, self.mid = Stem(6), Stem(6)
        self.mid.conv[0] = nn.Conv2d(6, 6, 3, padding=1)
        self.one = nn.Conv2d(1, 4, 1)
        self.head = nn.Linear(4 + 2 + 6, 3)

    def forward(self, x):
        y = self.mid(self.stem(x))
        a = self.one(y[:, 2:3]).mean((2, 3))
        b = torch.narrow(y, 1, 4, 1).mean((2, 3))
        c = torch.cat([p * (i + 1) for i, p in enumerate(torch.split(y, 1, dim=1))], 1)
        return self.head(torch.cat([a, b, b, c.mean((2, 3))], 1))


class StridedSlice(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.mid = Stem(8), Stem(8)
        self.mid.conv[0] = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.mid(self.stem(x))[:, ::2].mean((2, 3)))


class IndexFromChannels(nn.Module):
    """An index tensor computed from channel values looks rows up in a table."""

    def __init__(self):
        super().__init__()
        self.stem, self.proj = Stem(8), nn.Conv2d(8, 5, 1)
        self.table = nn.Parameter(torch.randn(5, 6))
        self.head = nn.Linear(6 + 8, 3)

    def forward(self, x):
        y = self.stem(x)
        idx = self.proj(y).mean((2, 3)).argmax(1)
        return self.head(torch.cat([self.table[idx], y.mean((2, 3))], 1))


class ExpandedGate(nn.Module):
    """Squeeze-excitation written with expand_as: as prunable as ``x * gate``."""

    def __init__(self):
        super().__init__()
        self.stem = Stem(8)
        self.fc1, self.fc2 = nn.Conv2d(8, 4, 1), nn.Conv2d(4, 8, 1)
        self.head = nn.Conv2d(8, 3, 1)

    def forward(self, x):
        y = self.stem(x)
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(y.mean((2, 3), keepdim=True)))))
        return self.head(y * gate.expand_as(y)).mean((2, 3))


class GroupedTransposeWithAttention(nn.Module):
    """A grouped ConvTranspose in a model whose slim form is the traced program (MHA)."""

    def __init__(self):
        super().__init__()
        self.stem = Stem(8)
        self.up = nn.ConvTranspose2d(8, 8, 2, stride=2, groups=4)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        seq = torch.relu(self.up(self.stem(x))).flatten(2).transpose(1, 2)
        out, _ = self.attn(seq, seq, seq, need_weights=False)
        return self.head(out.mean(1))


@pytest.mark.parametrize("make", [SlicedParameter, SizeOneSlices, StridedSlice,
                                  IndexFromChannels, ExpandedGate,
                                  GroupedTransposeWithAttention])
@pytest.mark.parametrize("fill", ["randn", "zeros"])
def test_prunable_groups_are_removable(make, fill):
    torch.manual_seed(0)
    model = make()
    x = torch.randn(2, 3, 6, 6) if fill == "randn" else torch.zeros(2, 3, 6, 6)
    make_zeroing_visible(model, torch.randn(2, 3, 6, 6))
    check_slim(model, x)


def test_an_expanded_gate_keeps_the_gated_channels_prunable():
    model, x = ExpandedGate(), torch.randn(2, 3, 6, 6)
    space = trainonce.analyze(model, x)
    stem = next(g for g in space.groups if g.name.startswith("stem.conv.0.weight"))
    assert stem.prunable, stem.reason


def test_a_boolean_mask_is_refused_with_a_trace_error():
    class BoolMask(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.keep = Stem(8), nn.Parameter(torch.randn(8))

        def forward(self, x):
            return self.stem(x)[:, self.keep > 0].mean((2, 3))

    with pytest.raises(trainonce.TraceError, match="depends on tensor values"):
        trainonce.analyze(BoolMask(), torch.randn(2, 3, 4, 4))


def test_training_only_heads_are_noted_and_kept_out():
    tv = pytest.importorskip("torchvision")
    model = tv.models.googlenet(weights=None, aux_logits=True, init_weights=False).eval()
    space = trainonce.analyze(model, torch.randn(1, 3, 64, 64))
    aux = [g for g in space.groups if any(m.param.startswith(("aux1.", "aux2."))
                                          for m in g.members)]
    assert aux and not any(g.prunable for g in aux)
    assert all("not used by the traced" in g.reason for g in aux)
    assert any("aux1." in n and "not used" in n for n in space.notes)


@pytest.mark.parametrize("name", ["bert", "gpt2"])
@pytest.mark.parametrize("batch", [1, 3, 5, 8])
def test_attention_heads_are_found_for_any_example_batch(name, batch):
    """The attention mask was lettered one dim short, so with a batch >= the number of heads
    (4) it met the heads and pinned them, silently."""
    pytest.importorskip("transformers")
    from hf_models import MODELS

    model, inputs = MODELS[name]()
    inputs = {**inputs, "input_ids": torch.randint(0, 64, (batch, 6))}
    space = trainonce.analyze(model.eval(), inputs)
    heads = [g for g in space.groups if g.prunable and g.size == 4]
    assert len(heads) == 2, [(g.name, g.size, g.reason) for g in space.groups]


def test_t5_shared_relative_position_bias_constructs_exactly():
    """T5 computes its relative position bias once and shares it across layers: the heads it
    meets are coupled across those layers (construction used to fail)."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                num_decoder_layers=2, num_heads=4, decoder_start_token_id=0)
    model = transformers.T5ForConditionalGeneration(cfg).eval()
    inputs = {"input_ids": torch.randint(0, 64, (2, 8)),
              "decoder_input_ids": torch.randint(0, 64, (2, 5)), "use_cache": False}
    make_zeroing_visible(model, inputs)
    space, _ = check_slim(model, inputs)
    heads = [g for g in space.groups if g.prunable and g.size == 4]
    assert heads and any(len({m.param.split(".layer.")[0] for m in g.members}) > 1
                         for g in heads)  # one head group spans both blocks
