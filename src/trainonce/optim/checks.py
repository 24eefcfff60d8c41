"""Guards of the ZIG optimizers against silent failure: finite hyper-parameters, frozen
parameters (ZIGs the optimizer cannot zero), and the per-step finiteness check of the gradients.
"""

from __future__ import annotations

import inspect
import math
import os
import warnings
from collections.abc import Sequence

import torch

from ..space import SearchSpace

_LOW_PRECISION = (torch.float16, torch.bfloat16)
_LIBRARY_DIRS = (  # trainonce/ and torch/
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,
    os.path.dirname(os.path.abspath(torch.__file__)) + os.sep,
)


def user_stacklevel() -> int:
    """The ``stacklevel`` of a warning raised by the caller of this function that points at
    the first frame outside trainonce and torch (the user's ``opt.step()``), however many
    wrappers (LR schedulers, step hooks, ``no_grad``) sit in between."""
    frame, level = inspect.currentframe(), 0  # frame objects only: no source lookups
    while frame is not None:
        if level >= 1 and not frame.f_code.co_filename.startswith(_LIBRARY_DIRS):
            return level
        frame, level = frame.f_back, level + 1
    return 2


def check_hyperparams(
    variant: str,
    variants: Sequence[str],
    lr: float,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
    betas: Sequence[float],
    eps: float,
) -> None:
    """ValueError for an unknown variant, a NaN/inf or negative hyper-parameter, or nesterov
    without SGD momentum."""
    if variant not in variants:
        raise ValueError(f"variant must be one of {tuple(variants)}, got {variant!r}")
    if len(betas) != 2:
        raise ValueError(f"betas must be two numbers, got {betas!r}")
    values = {
        "lr": lr,
        "momentum": momentum,
        "weight_decay": weight_decay,
        "betas[0]": betas[0],
        "betas[1]": betas[1],
        "eps": eps,
    }
    bad = [f"{k}={v}" for k, v in values.items() if not math.isfinite(float(v))]
    if bad:
        raise ValueError(f"hyper-parameters must be finite numbers, got {', '.join(bad)}")
    if lr < 0 or momentum < 0 or weight_decay < 0:
        raise ValueError("lr, momentum and weight_decay must be >= 0")
    if nesterov and (variant != "sgd" or momentum <= 0):
        raise ValueError("nesterov needs variant='sgd' and momentum > 0")


def frozen_zigs(space: SearchSpace, owner: str) -> torch.Tensor:
    """Bool ``[num_zigs]``: the ZIGs with a slice in a parameter that has ``requires_grad``
    False. The optimizer does not update such a parameter, so these ZIGs can never become
    exactly zero; a warning names them and the parameters."""
    mask = torch.zeros(space.num_zigs, dtype=torch.bool)
    params = dict(space.model.named_parameters(remove_duplicate=True))
    frozen = []
    for name, ps in space.param_slices.items():
        if params[name].requires_grad:
            continue
        ids = [vec[vec >= 0] for _, vec in ps.layers()]
        if any(i.numel() for i in ids):
            frozen.append(name)
            for i in ids:
                mask[i] = True
    if frozen:
        groups = [g.name for g in space.groups if bool(mask[g.offset : g.offset + g.size].any())]
        warnings.warn(
            f"{owner}: {int(mask.sum())} ZIGs in {len(groups)} group(s) ({_few(groups)}) have "
            f"slices in frozen parameters (requires_grad=False: {_few(frozen)}); they cannot be "
            "driven to zero and are not pruned (targets count only what can be removed)",
            UserWarning,
            stacklevel=4,
        )
    return mask


def _few(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "")


def grads_finite(grads: Sequence[torch.Tensor | None]) -> bool:
    """Whether every gradient (None: none) is finite: one sum per gradient (a single read pass,
    the cheapest public reduction; ``isfinite().all()`` costs ~20x more on CPU), one host sync.
    Half-precision gradients are summed in float32, so only a finite gradient whose sum
    exceeds float32's range (~3e38) would count as non-finite."""
    sums = []
    for g in grads:
        if g is None or g.is_sparse:  # sparse gradients are refused by the step itself
            continue
        sums.append(g.sum(dtype=torch.float32) if g.dtype in _LOW_PRECISION else g.sum())
    if not sums:
        return True
    dev = sums[0].device
    return bool(torch.stack([s.to(dev) for s in sums]).isfinite().all())
