"""The base variants' update direction (SGD with momentum/nesterov, Adam, AdamW): the operations
of torch.optim's single-tensor path (bitwise-equal results), with temporaries in reused buffers.
"""

from __future__ import annotations

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


def direction(
    variant: str,
    p: torch.Tensor,
    state: dict,
    group: dict,
    scratch: Scratch,
    apply: bool,
    hold: Factors | None = None,
    fast: bool = False,
) -> torch.Tensor | None:
    """Update the variant's state for ``p`` and return the direction ``d`` (``x_new = x -
    lr*d``, decoupled decay aside); with ``apply`` take the step at once and return None.
    ``hold`` (0/1 `Factors` of ``p``) masks the gradient before it enters the state, so
    slices that are 0 in params and state stay exactly 0. A returned ``d`` may be a state
    buffer or ``p.grad`` itself, never a scratch buffer. ``fast`` lets SGD momentum take
    ``g + m*buf + wd*x`` in two passes instead of torch's three (same math, other rounding)."""
    g = p.grad
    if g.is_sparse:
        raise RuntimeError("sparse gradients are not supported")
    wd, lr = group["weight_decay"], group["lr"]
    if variant == "sgd":
        mom = group["momentum"]
        buf = state.get("momentum_buffer")
        if fast and mom and not group["nesterov"] and buf is not None:
            torch.add(g, buf, alpha=mom, out=buf)
            if wd:
                buf.add_(p, alpha=wd)
            if hold is not None:
                hold.mul_(buf)
            if apply:
                p.add_(buf, alpha=-lr)
                return None
            return buf
        tmp = scratch.get(p, 0) if (mom or apply) else None  # g is not the direction itself
        fuse = hold is not None and mom and not group["nesterov"]  # mask inside the momentum
        if hold is not None and not fuse:
            g = hold.mul(g, out=tmp)
        if wd:  # g + wd*x
            g = torch.add(g, p, alpha=wd, out=tmp) if tmp is not None else g.add(p, alpha=wd)
        if mom == 0:
            d = g
        else:
            if buf is None:
                buf = hold.mul(g) if fuse else g.detach().clone()
                state["momentum_buffer"] = buf
            elif fuse:  # (m*buf + g) * hold: add_ + mul_ is cheaper than addcmul_ on CPU
                hold.mul_(buf.mul_(mom).add_(g))
            else:
                buf.mul_(mom).add_(g)
            if group["nesterov"]:
                d = (
                    torch.add(g, buf, alpha=mom, out=scratch.get(p, 1))
                    if apply
                    else g.add(buf, alpha=mom)
                )
            else:
                d = buf
        if apply:
            p.add_(d, alpha=-lr)
            return None
        return d
    if hold is not None:
        g = hold.mul(g, out=scratch.get(p, 0))
    if wd and variant == "adam":
        g = torch.add(g, p, alpha=wd, out=scratch.get(p, 0))
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
    if hold is not None:
        # sqrt of exact zeros (the held slices) takes a slow path on CPU (~10x); clamping them to
        # the smallest normal float changes no other value and keeps their update at 0 (m = 0)
        denom = torch.clamp_min(exp_avg_sq, torch.finfo(p.dtype).tiny, out=scratch.get(p, 1))
        denom.sqrt_()
    else:
        denom = torch.sqrt(exp_avg_sq, out=scratch.get(p, 1))
    denom.div_((1 - b2**t) ** 0.5).add_(group["eps"])
    if apply:
        decay(variant, p, group)
        p.addcdiv_(exp_avg, denom, value=-lr / (1 - b1**t))
        return None
    return torch.div(exp_avg, denom).div_(1 - b1**t)


def decay(variant: str, p: torch.Tensor, group: dict) -> None:
    """AdamW's decoupled weight decay ``x *= 1 - lr*wd`` (a no-op for the other variants)."""
    if variant == "adamw" and group["weight_decay"]:
        p.mul_(1 - group["lr"] * group["weight_decay"])
