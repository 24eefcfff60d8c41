"""Every coupling pattern on a hand-written model: the slim model reproduces the full one."""

import pytest
import torch
from equivalence import check_slim, group_counts, make_zeroing_visible
from handwritten import CASES

import trainonce

# (groups, prunable groups, prunable ZIGs) of each case: a coupling rule that changes moves these
GROUPS = {
    "channel_shuffle": (11, 2, 11), "concat_slice": (14, 3, 19),
    "conv_transpose_instance_norm": (8, 2, 14), "custom_linear_subclass": (4, 2, 32),
    "depthwise": (12, 2, 20), "flatten_linear": (9, 3, 24), "group_norm": (8, 2, 12),
    "grouped_conv": (11, 2, 12), "layer_scale": (8, 2, 80), "multihead_attention": (5, 3, 52),
    "pixel_shuffle": (8, 2, 14), "shared_and_tied": (3, 2, 40), "split_chunk": (17, 5, 18),
    "squeeze_excite": (9, 3, 28),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_slim_matches_zeroed_full_model(name):
    cls, inputs = CASES[name]
    torch.manual_seed(0)
    model = cls()
    make_zeroing_visible(model, inputs)
    space, _ = check_slim(model, inputs)
    assert group_counts(space) == GROUPS[name], space.summary()


def _group_params(space):
    return [{m.param for m in g.members} for g in space.groups if g.prunable]


def test_concat_couples_consumer_columns_to_each_producer():
    cls, x = CASES["concat_slice"]
    space = trainonce.analyze(cls(), x)
    groups = _group_params(space)
    assert any({"a.0.weight", "c.0.weight"} <= g for g in groups)
    assert any({"b.0.weight", "d.0.weight"} <= g for g in groups)


def test_depthwise_ties_input_and_output_channels():
    cls, x = CASES["depthwise"]
    space = trainonce.analyze(cls(), x)
    group = next(g for g in space.groups if any(m.param == "dw.0.weight" for m in g.members))
    assert group.prunable and group.size == 12
    assert any(m.param == "expand.0.weight" for m in group.members)
    w2 = next(m for m in group.members if m.param == "dw2.weight")
    assert w2.index.shape == (12, 2)  # multiplier 2: two output channels per input channel


def test_grouped_conv_removes_whole_groups():
    cls, x = CASES["grouped_conv"]
    space = trainonce.analyze(cls(), x)
    g = next(g for g in space.groups if any(m.param == "grouped.0.weight" and m.dim == 0
                                            for m in g.members))
    assert g.size == 4  # one ZIG per conv group
    kept = next(g for g in space.groups if any(m.param == "grouped.0.weight" and m.dim == 1
                                               for m in g.members))
    assert not kept.prunable and "inside a channel group" in kept.reason


def test_tied_embedding_is_one_parameter_in_one_group():
    cls, x = CASES["shared_and_tied"]
    space = trainonce.analyze(cls(), x)
    hidden = next(g for g in space.groups if any(m.param == "embed.weight" and m.dim == 1
                                                 for m in g.members))
    assert hidden.prunable
    vocab = next(g for g in space.groups if any(m.param == "embed.weight" and m.dim == 0
                                                for m in g.members))
    assert not vocab.prunable


def test_flatten_maps_one_channel_to_its_spatial_columns():
    cls, x = CASES["flatten_linear"]
    space = trainonce.analyze(cls(), x)
    member = next(m for g in space.groups for m in g.members if m.param == "fc1.weight"
                  and m.dim == 1)
    assert member.index.shape == (6, 16)
    assert member.index[1].tolist() == list(range(16, 32))


def test_unknown_op_pins_channels_with_a_warning_naming_op_and_module():
    class Weird(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(4, 8)
            self.b = torch.nn.Linear(8, 3)

        def forward(self, x):
            return self.b(torch.special.i0(self.a(x)))

    with pytest.warns(UserWarning, match=r"no channel rule for special_i0.* in"):
        with pytest.raises(trainonce.NothingPrunableError):
            trainonce.analyze(Weird(), torch.randn(2, 4))
