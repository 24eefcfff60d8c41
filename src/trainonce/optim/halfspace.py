"""Half-space machinery shared by DHSPG and HSPG: G_p chosen under a spread guard, the group
penalty lambda_g * x_g/||x_g||, and the half-space projection restricted to G_p.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from ..space import SearchSpace
from .base import ZigOptimizer
from .rowscale import RowScale
from .saliency import saliency_scores
from .zigview import ext

# G_p never takes a group below SPREAD times the share a uniform cut would keep (see
# `spread_guard`). Without the guard, DHSPG's saliency cut the middle layer of a plain 32/64/128
# CNN to 1 of 64 channels at target_group_sparsity=0.5 (digits: 66-78% accuracy, 98% with it)
# and the stem of ResNet8 to 1 of 16 at 50% FLOPs. 5k MNIST, DHSPG, 2 seeds, 50% / 30% FLOPs:
# SPREAD 0.25 -> 97.52 / 97.16, 0.5 -> 97.64 / 97.60, 0.75 -> 97.92 / 97.48.
SPREAD = 0.5

# Default interval of the statistics steps (see `HalfSpaceOptimizer`); 1 measures every step.
# resnet50 parameters, DHSPG pruning step vs torch SGD: 3.1x with 1, 1.45x with 16 (1 thread);
# 5k MNIST, DHSPG, 2 seeds, 50% / 30% FLOPs: 97.64 / 97.60 with 1, 97.80 / 97.96 with 16.
STATS_EVERY = 16


def spread_guard(
    score: torch.Tensor,
    alive: torch.Tensor,
    gid: torch.Tensor,
    prunable: torch.Tensor,
    keep_share: float,
) -> torch.Tensor:
    """``score`` (float64, CPU) with, in every group, the ``alive`` ZIGs whose removal would
    leave fewer than ``ceil(keep_share * n)`` of its ``n`` prunable ZIGs (the already removed
    ones counted) moved behind every other candidate, in their own order: no group is emptied
    before the others while the target can be met without it; if it cannot, selection still
    reaches the target, taking the least salient of them first. Vectorised (no loop over ZIGs
    or groups)."""
    s = score.detach().double().cpu().clone()
    idx = torch.nonzero(alive).flatten()
    if idx.numel() == 0:
        return s
    n_groups = int(gid.max()) + 1
    size = torch.bincount(gid[prunable], minlength=n_groups)
    gone = torch.bincount(gid[prunable & ~alive], minlength=n_groups)
    allowed = (size - torch.ceil(size * keep_share).long() - gone).clamp(min=0)
    order = idx[torch.sort(s[idx], stable=True).indices]  # ascending score
    order = order[torch.sort(gid[order], stable=True).indices]  # grouped, order kept inside
    g = gid[order]
    counts = torch.bincount(g, minlength=n_groups)
    rank = torch.arange(order.numel()) - (torch.cumsum(counts, 0) - counts)[g]  # rank in group
    over = order[rank >= allowed[g]]
    # a shift far above any score, so that dividing by sqrt(relative cost) (FLOPs targets)
    # cannot mix the two tiers, and small enough that float64 keeps the order inside a tier
    s[over] += 1e6 * (1.0 + float(s[idx].abs().max()))
    return s


class _Trial(NamedTuple):
    """One pruning step's per-ZIG quantities (``[num_zigs]`` on the device; ``*_ext`` with the
    "no ZIG" slot): the half-space test reads them after every parameter is updated."""

    sq: torch.Tensor  # ||x_g||^2
    dot: torch.Tensor  # <x_g, d_g>
    cand: torch.Tensor  # G_p members still non-zero
    coef_ext: torch.Tensor  # penalty coefficient c_g = lambda_g / ||x_g||
    cross_ext: torch.Tensor  # sum_g c x^2, completed in `_apply`


class HalfSpaceOptimizer(ZigOptimizer):
    """Subclasses define ``_lambdas(sq, dot, dsq, penalised)`` (per-ZIG lambda_g; ``dot`` is
    ``<x_g, u_g>`` with the update ``u``, ``x_new = x - lr*u``) and ``_penalised()``; they may
    add a coefficient floor (``_floor_coef``).

    G_p (the ZIGs that may become zero) is re-selected at every period start of the pruning
    phase with the full target, so the projection can never exceed the target. At the last
    pruning step the G_p groups not yet projected are set to zero (``forced`` in metrics).

    ``stats_every`` (`STATS_EVERY`) is its own argument, the rest go to `ZigOptimizer`.
    Statistics steps (every ``stats_every``-th step of a period, and the last pruning step)
    measure ``||x_g||^2``, ``<x_g, u_g>`` (and ``||u_g||^2``), take the exact half-space step
    ``x - lr*(u + c*x)`` (``c`` the sum of the penalties ``lambda_g/||x_g||`` of the ZIGs an
    entry lies in) and the projection test. The steps in between take the variant step and
    then scale every penalised slice by ``max(1 - lr*c_g, 1/2)`` per ZIG dim with the last
    measured coefficients (the floor recomputed): the measurements are the expensive part of
    the step (several passes over every weight), this is one streaming multiply per dim.
    """

    saliency_weights: dict  # set by the subclass's __init__
    epsilon: float
    _needs_dsq = True

    def __init__(
        self,
        space: SearchSpace,
        lr: float = 0.1,
        *,
        stats_every: int = STATS_EVERY,
        progressive: bool = False,
        spread: float = SPREAD,
        **common: Any,
    ) -> None:
        super().__init__(space, lr, **common)
        self.progressive = bool(progressive)
        if not 0.0 <= spread <= 1.0 / max(self.target.uniform_keep(), 1e-12):
            raise ValueError(f"spread must be >= 0 and keep at most every channel, got {spread}")
        self.spread = float(spread)
        if isinstance(stats_every, bool) or not isinstance(stats_every, int) or stats_every < 1:
            raise ValueError(f"stats_every must be an integer >= 1, got {stats_every!r}")
        self.stats_every = stats_every
        self.gp = torch.zeros(self.space.num_zigs, dtype=torch.bool)
        self.forced = 0
        self._pending: _Trial | None = None
        self._active_key: tuple[int, int] | None = None
        self._pen_dims: dict[int, list[int]] = {}
        self._pen_dev: torch.Tensor | None = None
        self._scaler: RowScale | None = None
        # last measured penalty coefficient per ZIG (lambda_g / ||x_g||, 0 where unpenalised)
        self._coef = torch.zeros(self.space.num_zigs, dtype=torch.float64)

    def is_stats_step(self, t: int) -> bool:
        """Whether step ``t`` measures the statistics (see the class docstring)."""
        s = self.schedule
        if not s.start <= t < s.end:
            return False
        return s.position(t)[1] % self.stats_every == 0 or t == s.end - 1

    def _needs_directions(self, t: int) -> bool:
        return self.is_stats_step(t)

    def _penalised(self) -> torch.Tensor:
        """The ZIGs penalised now (bool, CPU)."""
        raise NotImplementedError

    def penalty_coefficients(self, t: int) -> torch.Tensor:
        """Per-ZIG coefficient ``c_g`` (float64, CPU) the steps between statistics steps apply
        at step ``t``: the last measured ``lambda_g / ||x_g||``, at least ``_floor_coef(t)``,
        0 for the ZIGs not penalised now; such a step scales every penalised slice by
        ``max(1 - lr * c, 1/2)`` per ZIG dim after the variant step."""
        coef = self._coef.detach().double().cpu().clamp(min=self._floor_coef(t))
        return torch.where(self._penalised(), coef, torch.zeros_like(coef))

    def _floor_coef(self, t: int) -> float:
        """A lower bound on every penalised ZIG's coefficient at step ``t`` (none: 0)."""
        return 0.0

    def _choose_gp(self, dirs: dict[int, torch.Tensor]) -> torch.Tensor:
        """G_p for the full target: the least salient ZIGs, channels under `spread_guard`
        (a structure is a size-1 group: it may go whole, as far as validity allows)."""
        alive = self.prunable & ~self.zero
        score = self._selection_score(self.zig_stats(dirs))
        keep = self.spread * self.target.uniform_keep()
        guarded = alive if self.pool.structures is None else alive & ~self.pool.structures
        score = spread_guard(score, guarded, self.pool.gid, self.prunable, keep)
        return self._select(self.target.fraction_at(1.0), score, self.zero)

    def _lambdas(self, sq, dot, dsq, penalised) -> torch.Tensor:
        raise NotImplementedError

    def _selection_score(self, stats) -> torch.Tensor:
        """Per-ZIG saliency at a period start (lowest: most redundant, chosen for G_p)."""
        return saliency_scores(stats, self.saliency_weights, self.prunable & ~self.zero)

    def _refresh_dims(self, t: int) -> None:
        """Per touched parameter, its ZIG dims holding penalised ZIGs (cached per period and
        zero count: the penalised set changes only with them)."""
        key = (self.schedule.position(t)[0], int(self.zero.sum()))
        if self._active_key == key:
            return
        self._active_key = key
        pen_cpu, cand_cpu = self._penalised(), self.gp & ~self.zero
        pen_ext, act_ext = ext(pen_cpu, False), ext(pen_cpu | cand_cpu, False)
        self._pen_dims = {
            i: self.view.dims_touching(i, pen_ext)
            for i in self.view.with_zigs
            if self.view.touches(i, act_ext)
        }
        self._pen_dev = pen_cpu.to(self._device())
        self._scaler = None

    @torch.no_grad()
    def _before_update(self, t: int, dirs: dict[int, torch.Tensor]) -> None:
        if not self.is_stats_step(t):  # a subclass may collect directions on other steps too
            return
        if self.schedule.position(t)[1] == 0:
            self.gp = self._choose_gp(dirs)
        self._refresh_dims(t)
        dev = self._device()
        sub = {i: dirs[i] for i in self._pen_dims if i in dirs}
        sq, dsq, dot = self._reductions(sub, self._needs_dsq)
        pen = self._pen_dev
        lam = self._lambdas(sq, dot, dsq, pen)
        zero = torch.zeros_like(lam)
        self._coef = torch.where(pen, lam / sq.sqrt().clamp(min=1e-30), zero)
        coef = torch.where(pen, self._coef.clamp(min=self._floor_coef(t)), zero)
        # <x_g, d_g + c x_g> needs sum_g c x^2 with c the SUM of the penalties of every ZIG an
        # entry lies in: c_g ||x_g||^2 here, the cross-dim terms in `_apply`
        cross = torch.zeros(self.view.num_zigs + 1, dtype=torch.float64, device=dev)
        cross[:-1] = coef * sq
        cand = (self.gp & ~self.zero).to(dev)
        self._pending = _Trial(sq, dot, cand, ext(coef, 0.0), cross)

    def _apply(self, i: int, p: torch.Tensor, d: torch.Tensor, group: dict) -> None:
        ks = self._pen_dims.get(i) if self._pending is not None else None
        if ks:  # x - lr*(d + c*x) = (1 - lr*c) * x - lr*d
            trial, tmp = self._pending, self._scratch.get(p, 2)
            self.view.add_mixed(trial.cross_ext, i, p, trial.coef_ext, tmp)
            self.view.scale_by_sum_(i, p, trial.coef_ext, -group["lr"], ks, tmp)
        super()._apply(i, p, d, group)

    def _shrink(self, coef: torch.Tensor, scaler: RowScale | None = None) -> None:
        """Between statistics steps: scale the slices of ``scaler`` (default: the penalised
        dims) by ``max(1 - lr*coef, 1/2)`` per ZIG dim (``coef`` per ZIG, on the device)."""
        if scaler is None:
            if self._scaler is None:
                self._scaler = RowScale(self.view, self._local, self._pen_dims, self._device())
            scaler = self._scaler
        lr = self.param_groups[0]["lr"]
        scaler.mul_(self._local, ext((1.0 - lr * coef).clamp(min=0.5), 1.0))

    @torch.no_grad()
    def _after_update(self, t: int) -> None:
        self._half_space_after(t)
        s = self.schedule
        if self.progressive and s.start <= t < s.end - 1 and s.position(t)[1] == s.length - 1:
            self._force_period(t)

    @torch.no_grad()
    def _force_period(self, t: int) -> None:
        """``progressive``: at a period's end, the G_p ZIGs still non-zero with the smallest
        norms are set to zero until the period's cumulative share of the target is met (the
        last pruning step zeroes the rest of G_p, as without it)."""
        cand = self.gp & ~self.zero
        if not bool(cand.any()):
            return
        period, _ = self.schedule.position(t)
        fraction = self.target.fraction_at((period + 1) / self.schedule.periods)
        v = self.view
        sq = torch.zeros(v.num_zigs + 1, dtype=torch.float64, device=self._device())
        for i in v.with_zigs:
            p = self._params[i]
            v.add_sq(sq, i, p, self._scratch.get(p, 2))
        norm = sq[:-1].sqrt().cpu()
        # only G_p may go: every other ZIG behind it (the shift of `spread_guard`)
        score = torch.where(cand, norm, norm + 1e6 * (1.0 + float(norm.max())))
        new = self._select(fraction, score, self.zero) & cand
        self._make_zero(self._sync(new))
        self._active_key = None

    @torch.no_grad()
    def _half_space_after(self, t: int) -> None:
        if self._pending is None:
            s = self.schedule
            if s.start <= t < s.end:  # a step between statistics steps
                self._refresh_dims(t)
                self._coef = self._coef.to(self._device())
                coef = self._coef.clamp(min=self._floor_coef(t))
                self._shrink(torch.where(self._pen_dev, coef, torch.zeros_like(coef)))
            return
        tr, self._pending = self._pending, None
        lr = self.param_groups[0]["lr"]
        # FSDP2: the cross terms were summed over local rows in `_apply`, after the statistics'
        # all-reduce (they need its lambdas): a second one for them
        (cross,) = self.shards.sum(tr.cross_ext)
        # half-space test on the trial point: <x_hat_g, x_g> < epsilon * ||x_g||^2
        hit = tr.cand & (tr.sq - lr * (tr.dot + cross[:-1]) < self.epsilon * tr.sq)
        if t == self.schedule.end - 1:
            self.forced = int((tr.cand & ~hit).sum())
            hit = tr.cand
        self._make_zero(self._sync(hit.cpu()))

    def redundant_mask(self) -> torch.Tensor:
        return self.zero | self.gp

    def metrics(self) -> dict:
        out = super().metrics()
        out["forced"] = self.forced
        return out

    def _extra_state(self) -> dict[str, torch.Tensor]:
        return {
            "gp": self.gp.clone(),
            "forced": torch.tensor(self.forced),
            "coef": self._coef.detach().cpu().clone(),
        }

    def _load_extra_state(self, extra: dict[str, torch.Tensor]) -> None:
        self.gp = extra["gp"].bool().cpu().clone()
        self.forced = int(extra["forced"])
        if "coef" in extra:  # checkpoints from before statistics steps: measured at the next one
            self._coef = extra["coef"].double().cpu().clone()
        self._active_key = None
