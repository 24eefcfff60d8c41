"""Every loader returns the slim model in eval mode (the torch.hub / Hugging Face habit), however
it was saved: a BatchNorm model in train mode would normalise by the batch instead."""

from __future__ import annotations

import re

import pytest
import torch
from equivalence import make_zeroing_visible
from test_io import factory

import trainonce
import trainonce.hf


def test_load_returns_eval_mode(tmp_path):
    model, x = factory(), torch.randn(2, 3, 8, 8)
    make_zeroing_visible(model, x)
    space = trainonce.analyze(model, x)
    space.zero_random_groups(0.5, 0)
    slim = trainonce.construct_subnet(model, space).train()  # saved in train mode
    trainonce.save(slim, tmp_path / "slim")
    back = trainonce.load(tmp_path / "slim", factory)
    assert not any(m.training for m in back.modules())
    with torch.no_grad():
        assert torch.equal(back(x), slim.eval()(x))


def test_hf_from_pretrained_returns_eval_mode(tmp_path):
    pytest.importorskip("transformers")
    from hf_models import MODELS

    torch.manual_seed(0)
    model, inputs = MODELS["bert"]()
    space = trainonce.analyze(model, inputs)
    zero = torch.zeros(space.num_zigs, dtype=torch.bool)
    for g in space.groups:
        if g.prunable and g.size >= 2 and re.search(r"intermediate", g.name):
            zero[g.offset] = True
    space.set_zero(zero)
    slim = trainonce.construct_subnet(model, space).train()
    trainonce.hf.save_pretrained(slim, tmp_path / "slim")
    back = trainonce.hf.from_pretrained(tmp_path / "slim")
    assert not any(m.training for m in back.modules())
