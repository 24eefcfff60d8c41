"""Structure analysis of a Llama-2-7B-shaped model on the meta device: no weights needed."""

import pytest
import torch

import trainonce

transformers = pytest.importorskip("transformers")


def _llama_7b(mode: str):
    """A Llama-2-7B-shaped model on the meta device and its analysis in ``mode``."""
    cfg = transformers.LlamaConfig(hidden_size=4096, intermediate_size=11008,
                                   num_hidden_layers=32, num_attention_heads=32,
                                   num_key_value_heads=8, vocab_size=32000)
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(cfg)
    ids = torch.zeros(1, 8, dtype=torch.long, device="meta")
    return model, trainonce.analyze(model, {"input_ids": ids, "use_cache": False}, mode=mode)


def test_llama_7b_on_meta_device():
    model, space = _llama_7b("prune")
    assert all(p.is_meta for p in model.parameters())
    prunable = [g for g in space.groups if g.prunable]
    heads = [g for g in prunable if "q_proj" in g.name]
    mlp = [g for g in prunable if "gate_proj" in g.name]
    assert len(heads) == 32 and all(g.size == 8 for g in heads)
    assert len(mlp) == 32 and all(g.size == 11008 for g in mlp)
    assert space.num_params() == sum(p.numel() for p in model.parameters())
    assert space.prunable_flops_fraction() > 0.8


def test_llama_7b_on_meta_device_in_erase_mode():
    _, space = _llama_7b("erase")
    units = [g for g in space.groups if g.prunable]
    assert len(units) == 64  # an attention and an MLP sublayer per layer
    assert all(g.kind == "structure" and g.size == 1 for g in units)
    attention = [g for g in units if "self_attn" in g.name]
    assert len(attention) == 32
    # a sublayer's cost is its own: the 64 units hold all but embeddings, final norm and head
    inside = sum(g.params for g in units)
    outside = 2 * 32000 * 4096 + 4096
    assert inside == space.num_params() - outside
    zero = torch.zeros(space.num_zigs, dtype=torch.bool)
    zero[[g.offset for g in attention]] = True
    assert space.valid(zero)  # attention-free Llama still has a path through the MLPs
