"""Zoo equivalence on tiny Hugging Face models built from configs (no downloads)."""

import pytest
import torch
from equivalence import check_slim, group_counts, make_zeroing_visible

pytest.importorskip("transformers")
from hf_models import MODELS  # noqa: E402

# (groups, prunable groups, prunable ZIGs): a rule gone missing moves these
GROUPS = {"bert": (33, 5, 168), "gpt2": (21, 4, 264), "llama": (7, 4, 132),
          "vit": (29, 4, 136)}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_hf_slim_matches(name):
    torch.manual_seed(0)
    model, inputs = MODELS[name]()
    make_zeroing_visible(model, inputs)
    space, slim = check_slim(model, inputs)
    assert group_counts(space) == GROUPS[name], space.summary()
    assert not isinstance(slim, torch.fx.GraphModule), "HF models should stay eager modules"


def test_llama_gqa_heads_are_pruned_per_kv_group(tmp_path):
    import trainonce

    model, inputs = MODELS["llama"]()
    space = trainonce.analyze(model, inputs)
    attn = [g for g in space.groups if g.prunable and "q_proj" in g.name]
    assert [g.size for g in attn] == [2, 2]  # 2 kv heads per layer, each with its 2 q heads
    q = next(m for m in attn[0].members if m.param.endswith("q_proj.weight"))
    k = next(m for m in attn[0].members if m.param.endswith("k_proj.weight"))
    assert q.index.shape == (2, 16) and k.index.shape == (2, 8)
    hidden = next(g for g in space.groups if any(m.param.endswith("embed_tokens.weight")
                                                 and m.dim == 1 for m in g.members))
    assert not hidden.prunable and "input_layernorm" in hidden.reason  # RMSNorm: mean over it


def test_hf_slim_saves_with_save_pretrained(tmp_path):
    import trainonce

    model, inputs = MODELS["llama"]()
    space = trainonce.analyze(model, inputs)
    space.zero_random_groups(0.5, 0)
    slim = trainonce.construct_subnet(model, space)
    slim.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").exists()
