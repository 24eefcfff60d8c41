"""Shared checks for the zoo: make zeroing visible, zero random ZIGs, compare slim vs full."""

from __future__ import annotations

import torch
from torch import nn

import trainonce
from trainonce.subnet.construct import outputs


@torch.no_grad()
def make_zeroing_visible(model: nn.Module, inputs, seed: int = 0) -> None:
    """Redraw constant-initialised parameters (zero heads, unit norms, tiny layer scales) and
    calibrate BatchNorm statistics, so that removing a channel changes the output."""
    gen = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        flat = p.detach().reshape(-1)
        if flat.numel() and (bool((flat == flat[0]).all()) or float(p.abs().max()) < 1e-3):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5 + (1.0 if p.dim() == 1 else 0.0))
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        model.train()
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = None  # cumulative average over the calibration passes
        args, kwargs = trainonce.trace.normalize_inputs(inputs)
        if len(args) == 1 and not kwargs and _float(args[0]):
            # a real batch: statistics from 2 images at 1x1 resolution would be degenerate.
            # 32 images of 32x32 (32k positions per channel at the input) are plenty; larger
            # images need fewer (maxvit_t at 224: 4 images, 8x less calibration time)
            positions = args[0][0].numel() // max(args[0].shape[1], 1)
            batch = max(4, min(32, 32 * 32 * 32 // max(positions, 1)))
            args = (torch.randn((batch,) + tuple(args[0].shape[1:]), generator=gen),)
        model(*args, **kwargs)
    model.eval()


def rel_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    worst = 0.0
    for x, y in zip(a, b):
        if x.is_floating_point():
            worst = max(worst, float((x - y).abs().max()) / max(float(x.abs().max()), 1e-12))
    return worst


def check_slim(model: nn.Module, inputs, sparsities=(0.3, 0.7), seeds=(0, 1), mode="prune",
               space=None):
    """For each sparsity and seed: zero random ZIGs (random valid structures in erasing
    mode), build the slim model and assert it reproduces the zeroed model; then the last slim
    model must analyse again (its FLOPs and params as the cost model predicted) and train.
    ``space``: the model's analysis when the caller has it (the session cache), else made here."""
    if space is None:
        space = trainonce.analyze(model, inputs, mode=mode)
    assert space.model is model and space.mode == mode
    state = [t.detach().clone() for t in list(model.parameters()) + list(model.buffers())]
    dense = outputs(model, space)
    n_full = sum(p.numel() for p in model.parameters())
    for sparsity in sparsities:
        for seed in seeds:
            with torch.no_grad():
                for t, saved in zip(list(model.parameters()) + list(model.buffers()), state):
                    t.copy_(saved)
            zero = space.zero_random_groups(sparsity, seed)
            assert int(zero.sum()) > 0, "nothing was zeroed"
            assert space.valid(zero)
            zeroed = outputs(model, space)
            assert rel_diff(dense, zeroed) > 1e-4, "zeroing ZIGs did not change the output"
            slim = trainonce.construct_subnet(model, space)
            got = outputs(slim, space)
            assert rel_diff(zeroed, got) <= 1e-5, (sparsity, seed, rel_diff(zeroed, got))
            n_slim = sum(p.numel() for p in slim.parameters())
            assert n_slim < n_full
            assert n_slim == space.num_params(~zero)
            assert space.flops(~zero) < space.flops()
    again = trainonce.analyze(slim, inputs, mode="prune" if mode == "prune" else "both")
    assert again.num_params() == n_slim
    predicted = space.flops(~zero)  # exact cost model: what the slim model really costs
    assert abs(again.flops() - predicted) <= 1e-9 * predicted, (again.flops(), predicted)
    train_step(slim, inputs)
    return space, slim


def train_step(model: nn.Module, inputs) -> None:
    model.train()
    args, kwargs = trainonce.trace.normalize_inputs(inputs)
    out = model(*args, **kwargs)
    loss = sum(t.float().pow(2).mean() for t in trainonce.trace.tensor_leaves(out)
               if t.is_floating_point())
    loss.backward()
    before = [p.detach().clone() for p in model.parameters()]
    torch.optim.SGD(model.parameters(), lr=1e-2).step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def group_counts(space) -> tuple[int, int, int]:
    """(groups, prunable groups, prunable ZIGs): a model's search space in three numbers."""
    return len(space.groups), sum(g.prunable for g in space.groups), space.num_prunable_zigs


def analyze_untouched(model: nn.Module, inputs, probe=None, **kwargs):
    """``trainonce.analyze(model, inputs, **kwargs)``, asserting it left the model as it was:
    its state, attributes, ``training`` and ``requires_grad`` flags, and its output on a fresh
    input (``probe``; default: the example's tensors redrawn)."""
    args, kw = trainonce.trace.normalize_inputs(probe if probe is not None else inputs)
    if probe is None:
        args = tuple(torch.randn_like(a) if _float(a) else a for a in args)
        kw = {k: torch.randn_like(v) if _float(v) else v for k, v in kw.items()}

    def state():
        with torch.no_grad():
            was = [m.training for m in model.modules()]
            model.eval()
            out = [t.clone() for t in trainonce.trace.tensor_leaves(model(*args, **kw))]
            for m, flag in zip(model.modules(), was):
                m.training = flag
        return ({k: v.clone() for k, v in model.state_dict().items()}, was,
                [p.requires_grad for p in model.parameters()],
                [sorted(vars(m)) for m in model.modules()], out)

    before = state()
    space = trainonce.analyze(model, inputs, **kwargs)
    after = state()
    assert before[1:4] == after[1:4], "analyze changed flags or attributes of the model"
    assert before[0].keys() == after[0].keys(), "analyze added or removed state"
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0]), "state changed"
    assert all(torch.equal(a, b) for a, b in zip(before[4], after[4])), "output changed"
    return space


def _float(x) -> bool:
    return isinstance(x, torch.Tensor) and x.is_floating_point()
