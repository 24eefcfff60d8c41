"""`trainonce.hf.save_pretrained` / `from_pretrained`: Hugging Face models whose layers were cut
to different widths (MLP and heads) save and reload in one call each; model outputs (pooler of a
base model, classifier logits) are never pruned."""

import json
import re

import pytest
import torch

pytest.importorskip("transformers")
from hf_models import MODELS  # noqa: E402

import trainonce  # noqa: E402
import trainonce.hf  # noqa: E402


def uneven_slim(name):
    """The model of ``name`` with layer 0 cut by one ZIG per group, the others by half."""
    torch.manual_seed(0)
    model, inputs = MODELS[name]()
    space = trainonce.analyze(model, inputs)
    zero = torch.zeros(space.num_zigs, dtype=torch.bool)
    for g in space.groups:
        if g.prunable and g.size >= 2:
            k = 1 if re.search(r"\b(layers?|h)\.0\.", g.name) else g.size // 2
            zero[g.offset:g.offset + k] = True
    space.set_zero(zero)
    return model.eval(), inputs, trainonce.construct_subnet(model, space).eval()


def mlp_widths(model):
    return [m.weight.shape[-1] if n.endswith("c_fc") else m.out_features
            for n, m in model.named_modules()
            if n.endswith(("intermediate.dense", "mlp.up_proj", "mlp.c_fc"))]


@pytest.mark.parametrize("name", ["bert", "gpt2", "llama"])  # gpt2: tied lm_head
def test_uneven_widths_round_trip(name, tmp_path):
    model, inputs, slim = uneven_slim(name)
    widths = mlp_widths(slim)
    assert len(set(widths)) > 1, widths  # one stock config cannot describe this model
    trainonce.hf.save_pretrained(slim, tmp_path / "slim")
    back = trainonce.hf.from_pretrained(tmp_path / "slim")
    assert type(back) is type(model) and not back.training
    assert mlp_widths(back) == widths
    with torch.no_grad():
        got = back(**inputs)[0]
        assert torch.equal(got, slim(**inputs)[0])
        assert torch.allclose(got, model(**inputs)[0], atol=1e-5)
    cut = json.loads((tmp_path / "slim" / "config.json").read_text())["trainonce"]
    assert cut["load_with"] == "trainonce.hf.from_pretrained(path)"
    up = next(k for k in cut["layer_sizes"] if re.search(r"\.0\..*(intermediate|up_proj|c_fc)", k))
    assert cut["layer_sizes"][up] == {"0": widths[0]}


def test_plain_from_pretrained_fails_and_the_directory_says_what_to_call(tmp_path):
    import transformers

    _, _, slim = uneven_slim("bert")
    trainonce.hf.save_pretrained(slim, tmp_path / "slim")
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        transformers.BertForSequenceClassification.from_pretrained(tmp_path / "slim")
    assert "trainonce.hf.from_pretrained" in (tmp_path / "slim" / "README.md").read_text()


def test_ignore_mismatched_sizes_loads_a_different_model(tmp_path):
    """What docs/integrations.md warns of: the flag transformers' error suggests loads without
    an error, but every cut layer comes back at full width with random weights."""
    import transformers

    _, inputs, slim = uneven_slim("bert")
    trainonce.hf.save_pretrained(slim, tmp_path / "slim")
    plain = transformers.BertForSequenceClassification.from_pretrained(
        tmp_path / "slim", ignore_mismatched_sizes=True).eval()
    assert mlp_widths(plain) != mlp_widths(slim)  # the config's full widths, not the cut ones
    with torch.no_grad():
        assert not torch.allclose(plain(**inputs)[0], slim(**inputs)[0], atol=1e-4)


def test_uniform_cut_config_is_restored_to_the_full_one(tmp_path):
    """A uniform cut rewrites config sizes (so plain save_pretrained works); the round trip
    must still rebuild from the full sizes."""
    torch.manual_seed(0)
    model, inputs = MODELS["llama"]()
    space = trainonce.analyze(model, inputs)
    space.zero_random_groups(0.5, 0)
    slim = trainonce.construct_subnet(model, space).eval()
    assert slim.config.intermediate_size == 32
    trainonce.hf.save_pretrained(slim, tmp_path / "slim")
    saved = json.loads((tmp_path / "slim" / "config.json").read_text())
    assert saved["intermediate_size"] == 64 and "trainonce_full_sizes" not in saved
    back = trainonce.hf.from_pretrained(tmp_path / "slim")
    assert back.config.intermediate_size == 32
    with torch.no_grad():
        assert torch.equal(back(**inputs)[0], slim(**inputs)[0])


def test_changed_weights_and_foreign_directories_are_refused(tmp_path):
    _, _, slim = uneven_slim("bert")
    trainonce.hf.save_pretrained(slim, tmp_path / "slim")
    slim.config.save_pretrained(tmp_path / "plain")
    with pytest.raises(ValueError, match="not written by trainonce.hf.save_pretrained"):
        trainonce.hf.from_pretrained(tmp_path / "plain")
    weights = tmp_path / "slim" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ValueError, match="not the weights file saved"):
        trainonce.hf.from_pretrained(tmp_path / "slim")
    with pytest.raises(ValueError, match="Hugging Face model returned by"):
        trainonce.hf.save_pretrained(torch.nn.Linear(2, 2), tmp_path / "x")


def test_model_outputs_are_never_pruned():
    import transformers as T

    cfg = T.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=64, vocab_size=64, max_position_embeddings=16)
    ids = {"input_ids": torch.randint(0, 64, (2, 6))}
    base = trainonce.analyze(T.BertModel(cfg), ids)  # pooler_output is a model output
    cls = trainonce.analyze(T.BertForSequenceClassification(cfg), ids)  # logits are
    for space, out in ((base, "pooler.dense.weight"), (cls, "classifier.weight")):
        pruned = [(m.param, m.dim) for g in space.groups if g.prunable for m in g.members]
        assert (out, 0) not in pruned and pruned
    _, inputs, slim = uneven_slim("bert")
    assert slim(**inputs).logits.shape == (2, 3) and slim.classifier.out_features == 3
