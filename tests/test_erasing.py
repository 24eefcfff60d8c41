"""Erasing mode (OTOv3): removal units found with exact counts on real architectures, random
valid erasures reproduced exactly by the slim model, and the validity of every erased set."""

from __future__ import annotations

import pytest
import torch
from equivalence import check_slim, make_zeroing_visible
from erasing_models import Chain, SigmoidBranch, SuperNet, TwoBranches, supernet_units
from hf_models import MODELS as HF

import trainonce

pytest.importorskip("torchvision")

# (units, removable): main branches + conv shortcuts for ResNets, blocks with a skip for
# MobileNetV2, every block for ConvNeXt, the four branches of each of GoogLeNet's 9 inceptions
TORCHVISION = {
    "resnet18": 8 + 3,
    "resnet50": 16 + 4,
    "mobilenet_v2": 10,
    "convnext_tiny": 3 + 3 + 9 + 3,
    "googlenet": 9 * 4,
}


def removable(space) -> list:
    return [g for g in space.groups if g.kind == "structure" and g.prunable]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_torchvision_units(name, analysed):
    _, _, space = analysed(name, 32, "erase")
    assert len(removable(space)) == TORCHVISION[name]
    assert all(g.size == 1 and g.kind == "structure" for g in space.groups)


@pytest.mark.slow
def test_resnet_units_are_branches_and_shortcuts(analysed):
    _, _, space = analysed("resnet18", 32, "erase")
    names = [g.name for g in removable(space)]
    assert "layer1.0.{conv1,bn1,conv2,bn2}" in names
    assert sum("downsample" in n for n in names) == 3


@pytest.mark.parametrize("name", sorted(HF))
def test_transformer_units_are_attention_and_mlp_sublayers(name):
    model, inputs = HF[name]()
    space = trainonce.analyze(model, inputs, mode="erase")
    names = [g.name for g in removable(space)]
    assert len(names) == 2 * 2, names  # 2 layers x (attention, MLP)
    assert sum(any(k in n for k in ("mlp", "intermediate")) for n in names) == 2


def test_every_weighted_candidate_op_of_a_supernet_is_a_unit():
    space = trainonce.analyze(SuperNet(), torch.randn(2, 1, 16, 16), mode="erase")
    assert len(removable(space)) == supernet_units()
    assert all(".edges." in g.name for g in removable(space))


def test_a_branch_ending_in_sigmoid_is_not_removable():
    space = trainonce.analyze(SigmoidBranch(), torch.randn(2, 4, 8, 8), mode="erase")
    by_name = {g.name: g for g in space.groups}
    assert not by_name["conv"].prunable
    assert "not exactly zero" in by_name["conv"].reason
    assert by_name["gate.{0,1}"].prunable


def test_a_chain_has_nothing_to_erase():
    with pytest.raises(trainonce.NothingPrunableError, match="nothing in this model can be erased"):
        trainonce.analyze(Chain(), torch.randn(2, 4, 8, 8), mode="erase")


def test_removing_every_input_of_a_sum_is_invalid_and_refused():
    model = TwoBranches()
    space = trainonce.analyze(model, torch.randn(2, 4, 8, 8), mode="erase")
    assert len(removable(space)) == 2
    both = torch.ones(space.num_zigs, dtype=torch.bool)
    one = torch.tensor([True, False])
    assert space.valid(one) and not space.valid(both)
    space.set_zero(both)
    with pytest.raises(ValueError, match=r"removing a\.\{0,2\}, b\.\{0,1\} leaves no input to add"):
        trainonce.construct_subnet(model, space)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="mode must be one of prune, erase, both"):
        trainonce.analyze(Chain(), torch.randn(2, 4, 8, 8), mode="erasing")


def test_both_mode_nests_channels_inside_structures():
    space = trainonce.analyze(TwoBranches(), torch.randn(2, 4, 8, 8), mode="both")
    kinds = {g.kind for g in space.groups if g.prunable}
    assert kinds == {"channel", "structure"}
    ps = space.param_slices["a.0.0.weight"]
    assert ps.dims and ps.outer  # one position: a channel ZIG and a structure ZIG
    # removing the structure removes its channels' cost too: never counted twice
    s = next(g for g in space.groups if g.kind == "structure" and g.name.startswith("a."))
    keep = torch.ones(space.num_zigs, dtype=torch.bool)
    keep[s.offset] = False
    only_structure = space.flops() - space.flops(keep)
    keep[space.param_slices["a.0.0.weight"].dims[0][:3]] = False
    assert space.flops() - space.flops(keep) == pytest.approx(only_structure)


# ----- slim == zeroed full model, costs as predicted, re-analysis and a training step -------
@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "googlenet", "convnext_tiny",
                                  "resnet50"])
def test_torchvision_random_erasures_slim_exactly(name, analysed):
    model, x, space = analysed(name, 32, "erase")
    # two draws per model (a light and a heavy erasure), each with its own seed
    index = sorted(TORCHVISION).index(name)
    check_slim(model, x, sparsities=(0.3, 0.7), seeds=(index,), mode="erase", space=space)


@pytest.mark.parametrize("name", sorted(HF))
def test_transformer_random_erasures_slim_exactly(name):
    model, inputs = HF[name]()
    make_zeroing_visible(model, inputs)
    check_slim(model, inputs, mode="erase")


@pytest.mark.parametrize("mode", ["erase", "both"])
def test_supernet_random_erasures_slim_exactly(mode):
    model, x = SuperNet(), torch.randn(4, 1, 16, 16)
    make_zeroing_visible(model, x)
    check_slim(model, x, mode=mode)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "googlenet"])
def test_both_mode_slims_exactly_on_torchvision(name, analysed):
    model, x, space = analysed(name, 32, "both")
    check_slim(model, x, sparsities=(0.3, 0.7), seeds=(0,), mode="both", space=space)


@pytest.mark.parametrize("name", ["bert", "llama"])
def test_both_mode_slims_exactly_on_transformers(name):
    model, inputs = HF[name]()
    make_zeroing_visible(model, inputs)
    check_slim(model, inputs, mode="both")


# ----- whole transformer layers leave their ModuleList ------------------------------------
def test_a_layer_without_attention_and_mlp_is_deleted_and_round_trips(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                   num_key_value_heads=2, intermediate_size=64, vocab_size=64,
                                   head_dim=8)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg)
    inputs = {"input_ids": torch.randint(0, 64, (2, 6)), "use_cache": False}
    make_zeroing_visible(model, inputs)
    space = trainonce.analyze(model, inputs, mode="both")
    zero = torch.zeros(space.num_zigs, dtype=torch.bool)
    for g in space.groups:
        if g.prunable and (g.kind == "channel" and g.size > 1 or ".layers.1." in g.name):
            zero[g.offset] = True  # one channel of every group, and all of layer 1
    space.set_zero(zero)
    with torch.no_grad():
        want = model(**inputs).logits
    slim = trainonce.construct_subnet(model, space)
    assert isinstance(slim, transformers.LlamaForCausalLM)  # the model's own class
    assert len(slim.model.layers) == 2 and slim.config.num_hidden_layers == 2
    assert [layer.self_attn.layer_idx for layer in slim.model.layers] == [0, 1]
    with torch.no_grad():
        got = slim(**inputs).logits
    assert (got - want).abs().max() <= 1e-5 * want.abs().max()
    assert sum(p.numel() for p in slim.parameters()) == space.num_params(~zero)
    trainonce.hf.save_pretrained(slim, tmp_path / "slim")
    again = trainonce.hf.from_pretrained(tmp_path / "slim")
    with torch.no_grad():
        assert torch.equal(again(**inputs).logits, got)


def test_a_post_norm_layer_is_not_deleted_but_erased_in_the_program():
    model, inputs = HF["bert"]()
    make_zeroing_visible(model, inputs)
    space = trainonce.analyze(model, inputs, mode="erase")
    zero = torch.tensor([".layer.1." in g.name for g in space.groups])
    space.set_zero(zero)
    with torch.no_grad():
        want = model(**inputs).logits
    slim = trainonce.construct_subnet(model, space)  # LayerNorms stay: not an identity layer
    assert not isinstance(slim, type(model))
    with torch.no_grad():
        assert (slim(**inputs).logits - want).abs().max() <= 1e-5 * want.abs().max()
