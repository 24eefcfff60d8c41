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
        if flat.numel() and bool((flat == flat[0]).all()) or float(p.abs().max()) < 1e-3:
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5 + (1.0 if p.dim() == 1 else 0.0))
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        model.train()
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = None  # cumulative average over the calibration passes
        args, kwargs = trainonce.trace.normalize_inputs(inputs)
        for _ in range(2):
            model(*args, **kwargs)
    model.eval()


def rel_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    worst = 0.0
    for x, y in zip(a, b):
        if x.is_floating_point():
            worst = max(worst, float((x - y).abs().max()) / max(float(x.abs().max()), 1e-12))
    return worst


def check_slim(model: nn.Module, inputs, sparsity: float, seed: int, *, train_step=None):
    """Zero random ZIGs, build the slim model, and assert it reproduces the zeroed model."""
    space = trainonce.analyze(model, inputs)
    dense = outputs(model, space)
    zero = space.zero_random_groups(sparsity, seed)
    assert int(zero.sum()) > 0, "nothing was zeroed"
    zeroed = outputs(model, space)
    assert rel_diff(dense, zeroed) > 1e-4, "zeroing ZIGs did not change the output"
    slim = trainonce.construct_subnet(model, space)
    got = outputs(slim, space)
    assert rel_diff(zeroed, got) <= 1e-5, rel_diff(zeroed, got)
    n_full = sum(p.numel() for p in model.parameters())
    n_slim = sum(p.numel() for p in slim.parameters())
    assert n_slim < n_full
    assert space.flops(~zero) < space.flops()
    again = trainonce.analyze(slim, inputs)
    assert again.num_params() == n_slim
    slim.train()
    args, kwargs = trainonce.trace.normalize_inputs(inputs)
    out = slim(*args, **kwargs)
    loss = sum(t.float().pow(2).mean() for t in trainonce.trace._tensor_leaves(out)
               if t.is_floating_point())
    loss.backward()
    opt = torch.optim.SGD(slim.parameters(), lr=1e-3)
    opt.step()
    return space, slim
