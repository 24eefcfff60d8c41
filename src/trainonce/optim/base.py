"""Shared machinery of the ZIG optimizers: variant step (SGD/Adam/AdamW), schedule, exact-zero
holding in params and optimizer state, metrics, resumable state, DDP-consistent masks.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch.optim import Optimizer

from ..space import SearchSpace
from .saliency import ZigStats
from .schedule import Schedule
from .targets import Target, group_index, select
from .zigview import ZigView, ext

VARIANTS = ("sgd", "adam", "adamw")


class ZigOptimizer(Optimizer):
    """Base class: a `torch.optim.Optimizer` over every trainable parameter of ``space.model``.

    Subclasses hook into `step` through ``_needs_directions``, ``_before_update`` (sees the
    update directions ``d``, ``x_new = x - lr * d``) and ``_after_update``.
    """

    def __init__(
        self,
        space: SearchSpace,
        lr: float,
        variant: str,
        momentum: float,
        nesterov: bool,
        weight_decay: float,
        betas: tuple[float, float],
        eps: float,
        target_group_sparsity: float | None,
        target_flops: float | None,
        target_params: float | None,
        total_steps: int | None,
        start_pruning_step: int | None,
        pruning_steps: int | None,
        pruning_periods: int | None,
        sync_masks: bool = True,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError("lr, momentum and weight_decay must be >= 0")
        if nesterov and (variant != "sgd" or momentum <= 0):
            raise ValueError("nesterov needs variant='sgd' and momentum > 0")
        params = [p for p in space.model.parameters() if p.requires_grad]
        defaults = dict(
            lr=lr,
            momentum=momentum,
            nesterov=nesterov,
            weight_decay=weight_decay,
            betas=tuple(betas),
            eps=eps,
        )
        super().__init__(params, defaults)
        self.space = space
        self.variant = variant
        self.target = Target.from_args(target_group_sparsity, target_flops, target_params)
        self.schedule = Schedule.from_args(
            total_steps, start_pruning_step, pruning_steps, pruning_periods
        )
        self.sync_masks = sync_masks
        self._params = list(self.param_groups[0]["params"])
        self.view = ZigView(space, self._params)
        self.gid = group_index(space)
        self.prunable = space.prunable_mask
        self._step = 0
        self.zero = torch.zeros(space.num_zigs, dtype=torch.bool)  # fixed exact zeros (CPU)
        self._hold: dict[int, torch.Tensor | None] | None = None
        self._pre_scale: dict[int, torch.Tensor] = {}

    # ----- the step --------------------------------------------------------------------------
    def _needs_directions(self, t: int) -> bool:
        return False

    def _before_update(self, t: int, dirs: dict[int, torch.Tensor]) -> None:
        pass

    def _after_update(self, t: int) -> None:
        pass

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if len(self.param_groups) != 1:
            raise RuntimeError("ZIG optimizers hold one param group (all model parameters)")
        group = self.param_groups[0]
        t = self._step
        collect = self._needs_directions(t)
        dirs: dict[int, torch.Tensor] = {}
        self._pre_scale: dict[int, torch.Tensor] = {}
        for i, p in enumerate(self._params):
            if p.grad is None:
                continue
            d = self._direction(i, p, group, apply=not (collect and self.view.entries[i]))
            if d is not None:
                dirs[i] = d
        if collect:
            self._before_update(t, dirs)
            for i, d in dirs.items():
                self._apply(i, self._params[i], d, group)
        self._after_update(t)
        self._step += 1
        return loss

    def _direction(self, i: int, p: torch.Tensor, group: dict, apply: bool) -> torch.Tensor | None:
        """Variant update direction ``d`` (moments updated in place); zero ZIG slices masked out
        so params and state stay exactly zero there. With ``apply`` the step ``x -= lr*d`` is
        taken at once (fused where possible) and None returned."""
        g = p.grad
        if g.is_sparse:
            raise RuntimeError("sparse gradients are not supported")
        wd, m = group["weight_decay"], self._hold_mask(i, p)
        if wd and self.variant != "adamw":
            g = g.add(p, alpha=wd)
        state = self.state[p]
        if self.variant == "sgd":
            mom = group["momentum"]
            if mom == 0:
                return self._maybe_apply(i, p, g * m if m is not None else g, group, apply)
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = g * m if m is not None else g.clone()
                state["momentum_buffer"] = buf
            elif m is not None:
                buf.mul_(mom).addcmul_(g, m)
            else:
                buf.mul_(mom).add_(g)
            if group["nesterov"]:
                d = buf.mul(mom).addcmul_(g, m) if m is not None else g.add(buf, alpha=mom)
                return self._maybe_apply(i, p, d, group, apply)
            return self._maybe_apply(i, p, buf, group, apply)
        if m is not None:
            g = g * m
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
        denom = (exp_avg_sq.sqrt() / math.sqrt(1 - b2**t)).add_(group["eps"])
        if apply:
            self._decay(p, group)
            p.addcdiv_(exp_avg, denom, value=-group["lr"] / (1 - b1**t))
            return None
        return exp_avg.div(denom).div_(1 - b1**t)

    def _maybe_apply(self, i, p, d, group, apply: bool) -> torch.Tensor | None:
        if not apply:
            return d
        self._apply(i, p, d, group)
        return None

    def _decay(self, p: torch.Tensor, group: dict) -> None:
        if self.variant == "adamw" and group["weight_decay"]:
            p.mul_(1 - group["lr"] * group["weight_decay"])

    def _apply(self, i: int, p: torch.Tensor, d: torch.Tensor, group: dict) -> None:
        self._decay(p, group)
        scale = self._pre_scale.get(i)
        if scale is not None:  # x - lr*(d + c*x) = (1 - lr*c) * x - lr*d
            p.mul_(scale)
        p.add_(d, alpha=-group["lr"])

    # ----- exact zeros -----------------------------------------------------------------------
    def _hold_mask(self, i: int, p: torch.Tensor) -> torch.Tensor | None:
        if not self.view.entries[i]:
            return None
        if self._hold is None:
            zero_ext = ext(self.zero, False)
            keep_ext = ext((~self.zero).double(), 1.0)
            self._hold = {
                j: self.view.multiplier(j, self._params[j], keep_ext)
                if self.view.touches(j, zero_ext)
                else None
                for j in self.view.with_zigs
            }
        return self._hold.get(i)

    @torch.no_grad()
    def _make_zero(self, new: torch.Tensor) -> None:
        """Fix ZIGs ``new`` (bool, CPU) at exactly zero in params and in optimizer state."""
        new = new.bool().cpu() & ~self.zero
        if not bool(new.any()):
            return
        new_ext = ext(new, False)
        keep_ext = ext((~new).double(), 1.0)
        for i in self.view.with_zigs:
            if not self.view.touches(i, new_ext):
                continue
            p = self._params[i]
            m = self.view.multiplier(i, p, keep_ext) == 0
            p.masked_fill_(m, 0.0)
            for key in ("momentum_buffer", "exp_avg", "exp_avg_sq"):
                buf = self.state[p].get(key)
                if buf is not None:
                    buf.masked_fill_(m, 0.0)
        self.zero = self.zero | new
        self._hold = None

    def _sync(self, mask: torch.Tensor) -> torch.Tensor:
        """Under torch.distributed, every rank takes rank 0's mask (identical selections)."""
        if not (self.sync_masks and dist.is_available() and dist.is_initialized()):
            return mask
        t = mask.to(torch.uint8)
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.broadcast(t, src=0)
        return t.cpu().bool()

    # ----- helpers for subclasses ------------------------------------------------------------
    def _device(self) -> torch.device:
        return (
            self._params[self.view.with_zigs[0]].device
            if self.view.with_zigs
            else torch.device("cpu")
        )

    def _stats(self, dirs: dict[int, torch.Tensor]) -> ZigStats:
        """Per-ZIG stats of the weights and the search direction ``-d``."""
        dev = self._device()
        x = {i: self._params[i] for i in dirs}
        v = self.view
        return ZigStats(
            sq_norm=v.reduce(v.cores(x, x), dev).cpu(),
            dir_sq_norm=v.reduce(v.cores(dirs, dirs), dev).cpu(),
            dot=-v.reduce(v.cores(x, dirs), dev).cpu(),
            numel=v.numel,
        )

    def _select(self, fraction: float, score: torch.Tensor, already: torch.Tensor) -> torch.Tensor:
        return self._sync(select(self.space, self.target, fraction, score, already, self.gid))

    def redundant_mask(self) -> torch.Tensor:
        """ZIGs currently marked redundant (zero, or being driven to zero)."""
        return self.zero.clone()

    # ----- reporting and state ---------------------------------------------------------------
    @torch.no_grad()
    def metrics(self) -> dict[str, float | int | str]:
        keep = ~self.zero
        dense_f, dense_p = self.space.flops(), self.space.num_params()
        sq = self.space.zig_sq_norms().cpu()
        red = self.redundant_mask() & self.prunable
        n_prunable = max(1, int(self.prunable.sum()))
        return {
            "step": self._step,
            "phase": self.schedule.phase(self._step),
            "group_sparsity": int((self.zero & self.prunable).sum()) / n_prunable,
            "flops_kept": self.space.flops(keep) / dense_f if dense_f > 0 else float("nan"),
            "params_kept": self.space.num_params(keep) / dense_p if dense_p > 0 else float("nan"),
            "norm_important": float(sq[~red].sum().sqrt()),
            "norm_redundant": float(sq[red].sum().sqrt()),
            "num_redundant": int(red.sum()),
        }

    def _extra_state(self) -> dict[str, torch.Tensor]:
        return {}

    def _load_extra_state(self, extra: dict[str, torch.Tensor]) -> None:
        pass

    def state_dict(self) -> dict:
        sd = super().state_dict()
        sd["trainonce"] = {
            "step": torch.tensor(self._step, dtype=torch.long),
            "zero": self.zero.clone(),
            **self._extra_state(),
        }
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        extra = state_dict.pop("trainonce", None)
        super().load_state_dict(state_dict)
        if extra is not None:
            self._step = int(extra["step"])
            self.zero = extra["zero"].bool().cpu().clone()
            self._load_extra_state(extra)
        self._hold = None
