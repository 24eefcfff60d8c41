"""HESSO: warm-up, then period-wise saliency selection of redundant ZIGs that are scaled to exact
zero by each period's end; afterwards training goes on with the zero ZIGs fixed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..space import SearchSpace
from .base import ZigOptimizer
from .saliency import HESSO_DEFAULT_WEIGHTS, Criterion, check_weights, saliency_scores
from .zigview import Factors, ext


class HESSO(ZigOptimizer):
    """Hybrid Efficient Structured Sparse Optimizer.

    Steps ``[0, start_pruning_step)`` are plain ``variant`` steps. The pruning phase
    (``pruning_steps`` steps in ``pruning_periods`` periods of ``D`` steps) selects, at each
    period start, the lowest-saliency ZIGs up to the period's cumulative share of the target;
    every step of the period multiplies them by ``(D - s - 1) / (D - s)`` after the variant step,
    so they are exactly zero at the period end, and stay zero (params and moments) afterwards.

    Exactly one of ``target_group_sparsity`` (share of prunable ZIGs to zero),
    ``target_flops`` / ``target_params`` (share of the dense model to KEEP) is required.
    With only ``total_steps``: warm-up 15%, pruning over the next 45% in up to 10 periods.
    ``saliency_weights`` maps criterion names of `trainonce.optim.saliency.CRITERIA` (or callables
    ``ZigStats -> Tensor``, higher = more important) to weights; default 0.2 each.

    Arguments: ``lr``, ``saliency_weights``, plus the common arguments of `ZigOptimizer`
    (``variant``, ``momentum``, ``nesterov``, ``weight_decay``, ``betas``, ``eps``, one target,
    the schedule, ``sync_masks``).
    """

    def __init__(
        self,
        space: SearchSpace,
        lr: float = 0.1,
        *,
        saliency_weights: Mapping[str | Criterion, float] | None = None,
        **common: Any,
    ) -> None:
        super().__init__(space, lr, **common)
        self.saliency_weights = dict(saliency_weights or HESSO_DEFAULT_WEIGHTS)
        check_weights(self.saliency_weights)
        self.chosen = torch.zeros(space.num_zigs, dtype=torch.bool)  # this period's ZIGs
        self._chosen_fac: dict[int, Factors] | None = None

    def _needs_directions(self, t: int) -> bool:
        s = self.schedule
        return s.start <= t < s.end and s.position(t)[1] == 0

    def _score(self, t: int, dirs: dict[int, torch.Tensor]) -> torch.Tensor:
        stats = self.zig_stats(dirs)
        return saliency_scores(stats, self.saliency_weights, self.prunable & ~self.zero)

    def _choose(self, t: int, dirs: dict[int, torch.Tensor], fraction: float) -> torch.Tensor:
        return self._select(fraction, self._score(t, dirs), self.zero)

    def _before_update(self, t: int, dirs: dict[int, torch.Tensor]) -> None:
        period, _ = self.schedule.position(t)
        fraction = self.target.fraction_at((period + 1) / self.schedule.periods)
        self.chosen = self._choose(t, dirs, fraction) & ~self.zero
        self._chosen_fac = None

    @torch.no_grad()
    def _after_update(self, t: int) -> None:
        s = self.schedule
        if not s.start <= t < s.end or not bool(self.chosen.any()):
            return
        _, k = s.position(t)
        D = s.length
        if k == D - 1:  # period end: exactly zero, moments too, fixed from now on
            self._make_zero(self.chosen)
            self.chosen = torch.zeros_like(self.chosen)
            self._chosen_fac = None
            return
        factor = (D - k - 1) / (D - k)
        if self._chosen_fac is None:  # 0/1 pattern of the chosen ZIGs, built once per period
            chosen_ext, ind_ext = ext(self.chosen, False), ext(self.chosen.double(), 0.0)
            self._chosen_fac = {}
            for i in self.view.with_zigs:
                ks = self.view.dims_touching(i, chosen_ext)
                if ks:
                    self._chosen_fac[i] = self.view.factors(i, self._local[i], ind_ext, ks)
        # x *= 1 + (factor - 1) * chosen: one streaming pass per touched (param, ZIG dim)
        for i, fac in self._chosen_fac.items():
            fac.scale_(self._local[i], factor - 1.0)

    def redundant_mask(self) -> torch.Tensor:
        return self.zero | self.chosen

    def _extra_state(self) -> dict[str, torch.Tensor]:
        return {"chosen": self.chosen.clone()}

    def _load_extra_state(self, extra: dict[str, torch.Tensor]) -> None:
        self.chosen = extra["chosen"].bool().cpu().clone()
        self._chosen_fac = None
