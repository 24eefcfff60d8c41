"""ATO (Auto-Train-Once): a controller network learns which ZIGs to remove while the model
trains; a group proximal step drives the masked-off ZIGs towards zero until the mask freezes.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import torch

from ..space import SearchSpace
from .ato_budget import fit_budget
from .ato_controller import Controller, eval_mask, train_mask
from .ato_mask import MaskApplier, kept_share, resource_loss
from .base import ZigOptimizer
from .budgets import COST_BUDGETS
from .checks import user_stacklevel
from .zigview import ext


class ATO(ZigOptimizer):
    """Auto-Train-Once over any analysed model.

    ``loss_fn()`` returns a differentiable loss of ``space.model`` on held-out data (not the
    training batch). Schedule, from ``total_steps`` T (or ``start_pruning_step`` S and
    ``pruning_steps``): steps ``[0, S)`` (default S = 10% of T) are plain ``variant`` steps;
    during the controller phase ``[S, E)`` (default E = T // 2) the controller takes one AdamW
    step (``controller_lr`` 2e-3, ``controller_weight_decay`` 1e-2) every ``controller_every``
    steps (default: every 4 steps, at most ~200 updates) on ``loss_fn()`` (model in eval mode,
    its weights untouched, the controller's straight-through Gumbel mask applied) plus
    ``resource_weight`` (4) times the resource loss of the kept share of prunable FLOPs/params
    (margin ``resource_margin`` 0.005); every model step there is the variant step, then the
    group proximal step on the ZIGs the controller's noise-free mask turns off: ``w <- w *
    max(0, ||w|| - lr * lambda * r) / ||w||``, ``r`` the share of the ZIG's group that is off,
    ``lambda = lambdas[0]`` (10) in the phase's first half and ``lambdas[1]`` (1000) in its
    second. At step E-1 the mask freezes: ZIGs the mask keeps but that are already exactly zero
    (zeroed, then flipped back on) are removed first, then the mask is corrected to the budget
    (`fit_budget`: shortest removal prefix in the controller's logit order; kept cost <= target,
    within 0.2% where one ZIG's size allows) and the removed ZIGs are set to exactly zero and
    held (moments too) for the rest of training. ``metrics()["controller_kept_at_freeze"]`` is
    the controller's own kept share before that correction; a warning says when the correction
    had to remove more than a third of it (the controller lagged behind the budget).
    ``metrics()["mask_flips"]`` counts the mask's changes since the start of training (reading
    it changes nothing; a logger wanting a rate takes differences).

    ``target_flops`` or ``target_params`` (share to KEEP) is required. Under DDP the mask is
    rank 0's (``sync_masks``). Other arguments: ``gate_bias`` (b = 3), ``tau`` (0.4),
    ``budget_ramp`` (0: the controller aims at the budget from the start; r > 0: its target
    share falls linearly from 1 to the budget over the first r of the phase),
    ``controller_seed`` (controller init and Gumbel noise), plus the common ones of `ZigOptimizer`.
    """

    needs_loss_fn = True
    budgets = COST_BUDGETS  # a share to keep: the resource loss is a cost share
    max_pruning_periods = 1  # one controller phase

    def __init__(
        self,
        space: SearchSpace,
        lr: float = 0.1,
        *,
        loss_fn: Callable[[], torch.Tensor] | None = None,
        controller_every: int | None = None,
        controller_lr: float = 2e-3,
        controller_weight_decay: float = 1e-2,
        resource_weight: float = 4.0,
        resource_margin: float = 0.005,
        lambdas: tuple[float, float] = (10.0, 1000.0),
        gate_bias: float = 3.0,
        tau: float = 0.4,
        budget_ramp: float = 0.0,
        controller_seed: int = 0,
        **common: Any,
    ) -> None:
        if loss_fn is None or not callable(loss_fn):
            raise ValueError("ATO needs loss_fn: a callable returning the held-out loss")
        _default_schedule(common)
        super().__init__(space, lr, **common)
        if controller_every is not None and controller_every < 1:
            raise ValueError(f"controller_every must be >= 1, got {controller_every}")
        if tau <= 0 or min(lambdas) < 0:
            raise ValueError("need tau > 0 and lambdas >= 0")
        if not 0.0 <= budget_ramp <= 1.0:
            raise ValueError(f"budget_ramp is a share of the controller phase, got {budget_ramp}")
        self.budget_ramp = budget_ramp
        self.loss_fn = loss_fn
        phase = self.schedule.end - self.schedule.start
        # Every 4 steps, at most ~200 updates: on 5k MNIST (ResNet8, 15 epochs, 1 seed) updating
        # every step made training 3.5x slower than dense, against 1.5x, and was less accurate
        # at 10% / 5% FLOPs kept (96.64 / 94.88 vs 97.20 / 96.16; benchmarks/bench_ato.py).
        self.controller_every = controller_every or max(4, phase // 200)
        self.resource_weight, self.resource_margin = resource_weight, resource_margin
        self.lambdas, self.gate_bias, self.tau = tuple(lambdas), gate_bias, tau
        self.controller = Controller(space, seed=controller_seed)
        # lr 2e-3, not the paper's 1e-3: a few hundred updates here, not thousands. 5e-3 reaches
        # extreme budgets before the freeze but flips more ZIGs back on after the proximal step
        # zeroed them (docs/optimizers.md, "ATO's defaults").
        self.ctl_opt = torch.optim.AdamW(
            self.controller.parameters(), lr=controller_lr, weight_decay=controller_weight_decay
        )
        # AdamW's state as its lazy init would make it (step 0, zero moments), made now: a
        # state_dict taken before the first controller step then has every tensor, which
        # torch.distributed.checkpoint needs (it loads only the keys the target already has)
        for p in self.controller.parameters():
            self.ctl_opt.state[p] = {"step": torch.tensor(0.0), "exp_avg": torch.zeros_like(p),
                                     "exp_avg_sq": torch.zeros_like(p)}
        self.gen = torch.Generator().manual_seed(controller_seed)
        self.applier = MaskApplier(space)
        _, fixed = kept_share(space, self.target, torch.ones(space.num_zigs))
        self.share_target = (self.target.value - fixed) / (1.0 - fixed)
        self.mask = torch.ones(space.num_zigs, dtype=torch.bool)  # noise-free mask (CPU)
        self.controller_loss = float("nan")
        self.flips = 0  # changes of the mask since step 0 (cumulative: reading it resets nothing)
        self._frozen = False
        self.kept_at_freeze = float("nan")  # the controller's own mask, before the correction

    # ----- the controller ----------------------------------------------------------------
    def share_target_at(self, t: int) -> float:
        """The controller's target share at step ``t``: 1 at the start of the phase, down to the
        budget linearly over its first ``budget_ramp`` share."""
        s = self.schedule
        ramp = self.budget_ramp * (s.end - s.start)
        if ramp <= 0:
            return self.share_target
        done = min(1.0, (t - s.start + 1) / ramp)
        return self.share_target + (1.0 - done) * (1.0 - self.share_target)

    def _controller_step(self, t: int) -> None:
        model = self.space.model
        modes = {m: m.training for m in model.modules()}
        model.eval()
        try:
            with self.applier.gathered(), torch.enable_grad():
                logits = self.controller()
                st, _ = train_mask(logits, self.gate_bias, self.tau, self.gen)
                st = torch.where(self.prunable, st, torch.ones_like(st))
                task = self.applier.run(st, self.loss_fn)
                share, _ = kept_share(self.space, self.target, st)
                res = resource_loss(
                    share, self.share_target_at(t), self.resource_weight, self.resource_margin
                )
                loss = task.to(res.device, res.dtype) + res
                self.ctl_opt.zero_grad()
                loss.backward()
            self.ctl_opt.step()
        finally:
            for m, mode in modes.items():
                m.train(mode)
        self.controller_loss = float(loss.detach())
        new = self._sync(self._noise_free())
        self.flips += int((new != self.mask).sum())
        self.mask = new

    def _noise_free(self) -> torch.Tensor:
        """The controller's deterministic mask; non-prunable ZIGs kept; every group keeps at
        least its highest-logit ZIG."""
        with torch.no_grad():
            logits = self.controller().double()
        keep = eval_mask(logits, self.gate_bias, self.tau) | ~self.prunable
        n = int(self.pool.gid.max()) + 1
        has = torch.zeros(n, dtype=torch.float64).scatter_reduce(
            0, self.pool.gid, keep.double(), reduce="amax"
        )
        best = torch.full((n,), -float("inf"), dtype=torch.float64).scatter_reduce(
            0, self.pool.gid, logits, reduce="amax"
        )
        rescue = (has[self.pool.gid] == 0) & (logits == best[self.pool.gid])
        return keep | rescue

    # ----- the model step ----------------------------------------------------------------
    @torch.no_grad()
    def _after_update(self, t: int) -> None:
        s = self.schedule
        if self._frozen or not s.start <= t < s.end:
            return
        if (t - s.start) % self.controller_every == 0:
            self._controller_step(t)
        lam = self.lambdas[0] if t < (s.start + s.end) // 2 else self.lambdas[1]
        self._proximal(self.param_groups[0]["lr"] * lam)
        if t == s.end - 1:
            self._freeze()

    @torch.no_grad()
    def _proximal(self, step: float) -> None:
        off = ~self.mask & self.prunable & ~self.zero
        if not bool(off.any()) or step <= 0:
            return
        gid = self.pool.gid
        share = torch.zeros(int(gid.max()) + 1, dtype=torch.float64)
        share.index_add_(0, gid, off.double())
        share /= torch.bincount(gid).double()
        touched = self._touching(off)
        sq = torch.zeros(self.view.num_zigs + 1, dtype=torch.float64, device=self._device())
        for i in touched:  # the off ZIGs' norms over all of their slices: one pass per param
            x = self._local[i]
            self.view.add_sq(sq, i, x, self._scratch.get(x, 2))
        (sq,) = self.shards.sum(sq)  # FSDP2: local rows' partial sums
        norm = sq[:-1].cpu().sqrt()
        shrink = (norm - step * share[gid]).clamp(min=0) / norm.clamp(min=1e-30)
        factor = ext(torch.where(off, shrink, torch.ones_like(shrink)), 1.0)
        for i in touched:
            p = self._local[i]
            self.view.factors(i, p, factor).mul_(p)

    def _freeze(self) -> None:
        with torch.no_grad():
            logits = self.controller()
        budget = self.target
        self.kept_at_freeze = (budget.cost(self.space, self.mask & ~self.zero.cpu())
                               / budget.dense(self.space))
        if self.kept_at_freeze > 1.5 * self.target.value + 0.01:
            warnings.warn(
                f"ATO: at the freeze (step {self._step}) the controller's mask kept "
                f"{self.kept_at_freeze:.1%} of the {budget.label} against a target of "
                f"{self.target.value:.1%}; the budget correction removes the difference at once, "
                "by logit order, which costs accuracy. A larger controller_lr (the controller "
                "then reaches the budget itself) or a longer run avoids it.",
                stacklevel=user_stacklevel(),
            )
        # ZIGs the mask keeps but the proximal step zeroed while it had them off (flipped back
        # on) are removed first: an all-zero channel would only come back as a constant, so
        # the budget goes to live ones. The mask's own removals stay in the logit order (an
        # over-pruned mask gives its least confident ones back).
        dead = self.space.zero_mask() & self.prunable.cpu() & self.mask.cpu()
        zero = fit_budget(
            self.space, budget, budget.value, logits, self.mask,
            self.zero.cpu() | dead, self.pool,
        )
        zero = self._sync(zero)
        self._make_zero(zero)
        self.flips += int((self.mask != ~zero).sum())
        self.mask = ~zero
        self._frozen = True

    def redundant_mask(self) -> torch.Tensor:
        return self.zero | (~self.mask & self.prunable)

    # ----- reporting and state -----------------------------------------------------------
    @torch.no_grad()
    def metrics(self) -> dict[str, float | int | str]:
        out = super().metrics()
        logits = self.controller().double()
        soft = torch.sigmoid((logits + self.gate_bias) / self.tau)
        soft = torch.where(self.prunable, soft, torch.ones_like(soft))
        dense = self.space.flops() or float("nan")  # hand-built spaces may have no FLOPs
        out["controller_loss"] = self.controller_loss
        out["soft_flops_kept"] = float(self.space.costs.soft("flops", soft)) / dense
        out["hard_flops_kept"] = self.space.flops(self.mask) / dense
        out["mask_flips"] = self.flips
        out["controller_kept_at_freeze"] = self.kept_at_freeze
        return out

    def _extra_state(self) -> dict[str, Any]:
        return {
            "ato_controller": copy.deepcopy(self.controller.state_dict()),
            "ato_optimizer": copy.deepcopy(self.ctl_opt.state_dict()),
            "ato_generator": self.gen.get_state(),
            "ato_mask": self.mask.clone(),
            "ato_scalars": torch.tensor(
                [self.controller_loss, float(self.flips), float(self._frozen),
                 self.kept_at_freeze],
                dtype=torch.float64,
            ),
        }

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.controller.load_state_dict(extra["ato_controller"])
        self.ctl_opt.load_state_dict(extra["ato_optimizer"])
        self.gen.set_state(extra["ato_generator"])
        self.mask = extra["ato_mask"].bool().cpu().clone()
        loss, flips, frozen, *rest = extra["ato_scalars"].tolist()  # older states: 3 values
        self.controller_loss, self.flips, self._frozen = loss, int(flips), bool(frozen)
        self.kept_at_freeze = rest[0] if rest else float("nan")


def _default_schedule(common: dict[str, Any]) -> None:
    """ATO's phases from ``total_steps``: warm-up 10%, controller phase to half of training;
    one period however the phases are given (the controller phase is one period)."""
    if common.get("pruning_periods") is None:
        common["pruning_periods"] = 1
    if common["pruning_periods"] != ATO.max_pruning_periods:
        raise ValueError("ATO has one controller phase: pruning_periods must be 1")
    total = common.get("total_steps")
    if total is None:
        return  # the base class asks for it or for start_pruning_step + pruning_steps
    if common.get("start_pruning_step") is None:
        common["start_pruning_step"] = max(1, round(0.1 * total))
    if common.get("pruning_steps") is None:
        common["pruning_steps"] = max(1, total // 2 - common["start_pruning_step"])
