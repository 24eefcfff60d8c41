"""Structure analysis of a Llama-2-7B-shaped model on the meta device: no weights needed."""

import pytest
import torch

import trainonce

transformers = pytest.importorskip("transformers")


def test_llama_7b_on_meta_device():
    cfg = transformers.LlamaConfig(hidden_size=4096, intermediate_size=11008,
                                   num_hidden_layers=32, num_attention_heads=32,
                                   num_key_value_heads=8, vocab_size=32000)
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(cfg)
    ids = torch.zeros(1, 8, dtype=torch.long, device="meta")
    space = trainonce.analyze(model, {"input_ids": ids, "use_cache": False})
    assert all(p.is_meta for p in model.parameters())
    prunable = [g for g in space.groups if g.prunable]
    heads = [g for g in prunable if "q_proj" in g.name]
    mlp = [g for g in prunable if "gate_proj" in g.name]
    assert len(heads) == 32 and all(g.size == 8 for g in heads)
    assert len(mlp) == 32 and all(g.size == 11008 for g in mlp)
    assert space.num_params() == sum(p.numel() for p in model.parameters())
    assert space.prunable_flops_fraction() > 0.8
