"""Half-space machinery shared by DHSPG and HSPG: group penalty lambda_g * x_g/||x_g|| added to
the variant direction, half-space projection restricted to the target-sized set G_p.
"""

from __future__ import annotations

import torch

from .base import ZigOptimizer
from .saliency import saliency_scores
from .zigview import ext


class HalfSpaceOptimizer(ZigOptimizer):
    """Subclasses define ``_lambdas(sq, dot, dsq, penalised)`` (per-ZIG lambda_g; ``dot`` is
    ``<x_g, u_g>`` with the update ``u``, ``x_new = x - lr*u``) and ``_penalised()``.

    G_p (the ZIGs that may become zero) is re-selected at every period start of the pruning
    phase with the full target, so the projection can never exceed the target. At the last
    pruning step the G_p groups not yet projected are set to zero (``forced`` in metrics).
    """

    saliency_weights: dict
    epsilon: float
    _needs_dsq = True

    def _init_halfspace(self) -> None:
        self.gp = torch.zeros(self.space.num_zigs, dtype=torch.bool)
        self.forced = 0
        self._pending: torch.Tensor | None = None
        self._active_key: tuple[int, int] | None = None
        self._active: list[int] = []

    def _needs_directions(self, t: int) -> bool:
        return self.schedule.start <= t < self.schedule.end

    def _penalised(self) -> torch.Tensor:
        raise NotImplementedError

    def _lambdas(self, sq, dot, dsq, penalised) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def _before_update(self, t: int, dirs: dict[int, torch.Tensor]) -> None:
        s = self.schedule
        if s.position(t)[1] == 0:
            stats = self._stats(dirs)
            score = saliency_scores(stats, self.saliency_weights, self.prunable & ~self.zero)
            self.gp = self._select(self.target.fraction_at(1.0), score, self.zero)
        pen_cpu, cand_cpu = self._penalised(), self.gp & ~self.zero
        key = (s.position(t)[0], int(self.zero.sum()))
        if self._active_key != key:  # params touching a penalised or candidate ZIG
            self._active_key = key
            self._active = self._touching(pen_cpu | cand_cpu)
        dev, v = self._device(), self.view
        sub = {i: dirs[i] for i in self._active if i in dirs}
        cores: dict[int, torch.Tensor] = {}
        sq, dsq, dot = self._reductions(sub, self._needs_dsq, cores)
        pen = pen_cpu.to(dev)
        lam = self._lambdas(sq, dot, dsq, pen)
        coef = torch.where(pen, lam / sq.sqrt().clamp(min=1e-30), torch.zeros_like(lam))
        coef_ext = ext(coef, 0.0)
        lr = self.param_groups[0]["lr"]
        # the penalty d + c*x is applied as x * (1 - lr*c) - lr*d (see ZigOptimizer._apply);
        # <x_g, d_g + c x_g> = <x_g, d_g> + sum_g c x^2, from the x*x cores
        cross = torch.zeros(v.num_zigs + 1, dtype=torch.float64, device=dev)
        for i in sub:
            csum = v.multiplier_sum(i, self._params[i], coef_ext)
            self._pre_scale[i] = 1 - lr * csum
            core = cores[i]
            v.add_core(cross, i, torch.mul(core, csum, out=self._scratch.get(core, 2)))
        dot_pen = dot + cross[:-1]
        # half-space test on the trial point: <x_hat_g, x_g> < epsilon * ||x_g||^2
        cand = cand_cpu.to(dev)
        hit = cand & (sq - lr * dot_pen < self.epsilon * sq)
        if t == s.end - 1:
            self.forced = int((cand & ~hit).sum())
            hit = cand
        self._pending = hit

    def _after_update(self, t: int) -> None:
        if self._pending is not None:
            self._make_zero(self._sync(self._pending.cpu()))
            self._pending = None

    def redundant_mask(self) -> torch.Tensor:
        return self.zero | self.gp

    def metrics(self) -> dict:
        out = super().metrics()
        out["forced"] = self.forced
        return out

    def _extra_state(self) -> dict[str, torch.Tensor]:
        return {"gp": self.gp.clone(), "forced": torch.tensor(self.forced)}

    def _load_extra_state(self, extra: dict[str, torch.Tensor]) -> None:
        self.gp = extra["gp"].bool().cpu().clone()
        self.forced = int(extra["forced"])
