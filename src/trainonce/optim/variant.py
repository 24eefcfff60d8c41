"""The base variants' update direction (SGD with momentum/nesterov, Adam, AdamW): the operations
of torch.optim's single-tensor path (bitwise-equal results), with temporaries in reused buffers.
One function per variant, chosen by `DIRECTIONS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from .zigview import Factors

STATE_KEYS = ("momentum_buffer", "exp_avg", "exp_avg_sq")


class Scratch:
    """Reusable flat buffers per (device, dtype, slot), sized to the largest tensor asked for, so
    a step allocates no full-size temporaries (large allocations cost page faults on CPU)."""

    def __init__(self) -> None:
        self._bufs: dict[tuple[str, torch.dtype, int], torch.Tensor] = {}

    def get(self, like: torch.Tensor, slot: int = 0) -> torch.Tensor:
        key = (str(like.device), like.dtype, slot)
        buf = self._bufs.get(key)
        n = like.numel()
        if buf is None or buf.numel() < n:
            buf = torch.empty(n, dtype=like.dtype, device=like.device)
            self._bufs[key] = buf
        return buf[:n].view(like.shape)

    def reserve(self, params: list[torch.Tensor], slots: int) -> None:
        """Allocate every slot at the largest parameter's size once (no regrowth later)."""
        if params:
            big = max(params, key=lambda p: p.numel())
            for s in range(slots):
                self.get(big, s)


class Mode(NamedTuple):
    """How one parameter's update runs (see `direction`)."""

    scratch: Scratch
    apply: bool
    hold: Factors | None
    fast: bool
    grad: torch.Tensor


def direction(
    variant: str,
    p: torch.Tensor,
    state: dict,
    group: dict,
    scratch: Scratch,
    apply: bool,
    hold: Factors | None = None,
    fast: bool = False,
    grad: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """Update the variant's state for ``p`` and return the direction ``d`` (``x_new = x -
    lr*d``, decoupled decay aside); with ``apply`` take the step at once and return None.
    ``hold`` (0/1 `Factors` of ``p``) masks the gradient before it enters the state, so
    slices that are 0 in params and state stay exactly 0. A returned ``d`` may be a state
    buffer or ``p.grad`` itself, never a scratch buffer. ``fast`` lets SGD momentum take
    ``g + m*buf + wd*x`` in two passes instead of torch's three (same math, other rounding).
    ``grad`` stands for ``p.grad`` (an FSDP2 step passes local shards of both)."""
    g = p.grad if grad is None else grad
    if g.is_sparse:
        raise RuntimeError("sparse gradients are not supported")
    return DIRECTIONS[variant](p, state, group, Mode(scratch, apply, hold, fast, g))


def _sgd(p: torch.Tensor, state: dict, group: dict, m: Mode) -> torch.Tensor | None:
    """torch's ``_single_tensor_sgd`` for one parameter (or `_sgd_two_pass` when ``fast``)."""
    scratch, apply, hold = m.scratch, m.apply, m.hold
    mom, nesterov = group["momentum"], group["nesterov"]
    buf = state.get("momentum_buffer")
    if m.fast and mom and not nesterov and buf is not None:
        return _sgd_two_pass(p, m.grad, buf, group, apply, hold)
    tmp = scratch.get(p, 0) if (mom or apply) else None  # g is not the direction itself
    fuse = hold is not None and mom and not nesterov  # mask inside the momentum update
    g = m.grad
    if hold is not None and not fuse:
        g = hold.mul(g, out=tmp)
    if group["weight_decay"]:  # g + wd*x
        wd = group["weight_decay"]
        g = torch.add(g, p, alpha=wd, out=tmp) if tmp is not None else g.add(p, alpha=wd)
    if mom == 0:
        return _take(p, g, group, apply)
    if buf is None:
        buf = hold.mul(g) if fuse else g.detach().clone()
        state["momentum_buffer"] = buf
    elif fuse:  # (m*buf + g) * hold: add_ + mul_ is cheaper than addcmul_ on CPU
        hold.mul_(buf.mul_(mom).add_(g))
    else:
        buf.mul_(mom).add_(g)
    if not nesterov:
        return _take(p, buf, group, apply)
    if apply:
        return _take(p, torch.add(g, buf, alpha=mom, out=scratch.get(p, 1)), group, apply)
    return g.add(buf, alpha=mom)


def _sgd_two_pass(
    p: torch.Tensor, g: torch.Tensor, buf: torch.Tensor, group: dict, apply: bool,
    hold: Factors | None,
) -> torch.Tensor | None:
    """SGD momentum as ``buf = g + m*buf`` then ``buf += wd*x``: two passes over the buffer."""
    torch.add(g, buf, alpha=group["momentum"], out=buf)
    if group["weight_decay"]:
        buf.add_(p, alpha=group["weight_decay"])
    if hold is not None:
        hold.mul_(buf)
    return _take(p, buf, group, apply)


def _take(p: torch.Tensor, d: torch.Tensor, group: dict, apply: bool) -> torch.Tensor | None:
    """With ``apply``: ``x -= lr*d``, None; else ``d``."""
    if not apply:
        return d
    p.add_(d, alpha=-group["lr"])
    return None


def _adam(
    p: torch.Tensor, state: dict, group: dict, m: Mode, decoupled: bool = False
) -> torch.Tensor | None:
    """torch's ``_single_tensor_adam`` for one parameter; ``decoupled``: AdamW's decay."""
    g = m.grad
    if m.hold is not None:
        g = m.hold.mul(g, out=m.scratch.get(p, 0))
    if group["weight_decay"] and not decoupled:
        g = torch.add(g, p, alpha=group["weight_decay"], out=m.scratch.get(p, 0))
    if not state:
        state["step"] = torch.tensor(0.0)
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    state["step"] += 1
    t = float(state["step"])
    b1, b2 = group["betas"]
    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
    exp_avg.lerp_(g, 1 - b1)
    exp_avg_sq.mul_(b2).addcmul_(g, g, value=1 - b2)
    denom = _adam_denom(exp_avg_sq, m.scratch.get(p, 1), held=m.hold is not None)
    denom.div_((1 - b2**t) ** 0.5).add_(group["eps"])
    if m.apply:
        decay("adamw" if decoupled else "adam", p, group)
        p.addcdiv_(exp_avg, denom, value=-group["lr"] / (1 - b1**t))
        return None
    return torch.div(exp_avg, denom).div_(1 - b1**t)


def _adamw(p: torch.Tensor, state: dict, group: dict, m: Mode) -> torch.Tensor | None:
    return _adam(p, state, group, m, decoupled=True)


def _adam_denom(exp_avg_sq: torch.Tensor, out: torch.Tensor, held: bool) -> torch.Tensor:
    """``sqrt(exp_avg_sq)`` into ``out``. With held slices: sqrt of exact zeros takes a slow
    path on CPU (~10x); clamping them to the smallest normal float changes no other value and
    keeps their update at 0 (m = 0)."""
    if not held:
        return torch.sqrt(exp_avg_sq, out=out)
    return torch.clamp_min(exp_avg_sq, torch.finfo(out.dtype).tiny, out=out).sqrt_()


DirectionFn = Callable[[torch.Tensor, dict, dict, Mode], "torch.Tensor | None"]
DIRECTIONS: dict[str, DirectionFn] = {"sgd": _sgd, "adam": _adam, "adamw": _adamw}


def decay(variant: str, p: torch.Tensor, group: dict) -> None:
    """AdamW's decoupled weight decay ``x *= 1 - lr*wd`` (a no-op for the other variants)."""
    if variant == "adamw" and group["weight_decay"]:
        p.mul_(1 - group["lr"] * group["weight_decay"])
