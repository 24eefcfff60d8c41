"""Every optimizer on erasing-mode spaces: the hierarchy check is part of selection, so each one
ends with a valid set of removed structures that meets its target, and the slim model is exact;
H2SPG tracks its smoothed redundancy from the start and resumes bit-exactly."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from erasing_models import SuperNet

import trainonce
from trainonce.optim import H2SPG, HSPG, OPTIMIZERS

CLASSES = list(OPTIMIZERS.values())  # every registered optimizer


def batch(step: int, n: int = 16):
    g = torch.Generator().manual_seed(step)
    y = torch.randint(0, 10, (n,), generator=g)
    x = torch.randn(n, 1, 8, 8, generator=g)
    x[torch.arange(n), 0, y % 8, (3 * y) % 8] += 3.0
    return x, y


def run(cls, mode: str, steps: int = 30, stop: int | None = None, seed: int = 0, state=None):
    torch.manual_seed(seed)
    model = SuperNet(c=4, cells=2, nodes=2)
    space = trainonce.analyze(model, batch(0)[0], mode=mode)
    kw = dict(target_group_sparsity=0.5) if cls is HSPG else dict(target_flops=0.5)
    if cls.needs_loss_fn:
        xb, yb = batch(-1, 32)
        kw["loss_fn"] = lambda: F.cross_entropy(model(xb), yb)
    opt = cls(space, lr=0.05, total_steps=steps, **kw)
    start = 0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start = opt.steps_taken
    for t in range(start, steps if stop is None else stop):
        x, y = batch(t + 1)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model, space, opt


@pytest.mark.parametrize("mode", ["erase", "both"])
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_each_optimizer_ends_valid_on_target_and_exact(cls, mode):
    model, space, opt = run(cls, mode)
    zero = space.zero_mask()
    assert torch.equal(zero, opt.zero)
    structures = zero & space.structure_mask
    assert bool(structures.any()), "no structure was removed"
    assert space.valid(zero)
    m = opt.metrics()
    if cls is not HSPG:
        assert m["flops_kept"] <= 0.5 + 1e-9
    model.eval()
    x = batch(99)[0]
    slim = trainonce.construct_subnet(model, space)
    with torch.no_grad():
        want, got = model(x), slim(x)
    assert (want - got).abs().max() <= 1e-5 * want.abs().max()
    assert sum(p.numel() for p in slim.parameters()) == space.num_params(~zero)


def test_h2spg_tracks_smoothed_scores_during_warm_up():
    _, space, opt = run(H2SPG, "erase", steps=20, stop=2)
    assert opt.smoothed is not None and opt.smoothed.shape == (space.num_zigs,)
    assert int(opt.zero.sum()) == 0  # warm-up: nothing zeroed yet


def test_h2spg_resume_is_bitwise_with_its_smoothed_scores():
    ref_model, _, ref_opt = run(H2SPG, "erase", steps=20)
    model, _, opt = run(H2SPG, "erase", steps=20, stop=7)  # after warm-up, mid pruning
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert "smoothed" in state["opt"]["param_groups"][0]["trainonce"]
    again, _, opt2 = run(H2SPG, "erase", steps=20, seed=5, state=state)
    for k, v in again.state_dict().items():
        assert torch.equal(v, ref_model.state_dict()[k]), k
    assert torch.equal(opt2.zero, ref_opt.zero)


def test_h2spg_refuses_bad_hyper_parameters():
    model = SuperNet(c=4)
    space = trainonce.analyze(model, batch(0)[0], mode="erase")
    with pytest.raises(ValueError, match="smoothing"):
        H2SPG(space, target_flops=0.5, total_steps=10, smoothing=1.0)
    with pytest.raises(ValueError, match="track_every"):
        H2SPG(space, target_flops=0.5, total_steps=10, track_every=0)
