"""HESSO-CRIC: HESSO whose period selection is corrected by measuring, on a few batches, how much
the loss rises when each candidate ZIG is zeroed (and restored); harmful candidates are swapped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..sharding import reshard
from ..space import SearchSpace
from .hesso import HESSO
from .zigview import ext


class HESSOCRIC(HESSO):
    """HESSO with the Corrective Redundant Identification Cycle.

    ``loss_fn()`` returns the loss (tensor or float) of ``space.model`` on a few fixed batches;
    the optimizer calls it under ``torch.no_grad()`` with the model in ``eval()`` mode (so
    BatchNorm running statistics are not touched), once for the reference loss and once per
    measured candidate, at each period start only. Example::

        batches = [next(it) for _ in range(2)]
        def loss_fn():
            return sum(F.cross_entropy(model(x), y) for x, y in batches) / len(batches)
        opt = HESSOCRIC(space, lr=0.1, target_flops=0.5, total_steps=n, loss_fn=loss_fn)

    At a period start: candidates = HESSO's choice; each not yet measured candidate is zeroed,
    ``ratio = loss_zeroed / loss`` recorded, weights restored. Candidates with
    ``ratio > 1 + cric_tolerance`` are violating: they are excluded and replaced by the next
    ones; the cycle repeats up to ``cric_cycles`` times or until at most
    ``cric_max_violating`` (a share of the candidates) violate. Final score =
    saliency + ``cric_weight`` * normalised ``max(ratio - 1, 0)``; at most ``cric_max_evals``
    loss evaluations per period. Under DDP, rank 0's selection is broadcast.

    Arguments: ``lr``, ``loss_fn`` (required), ``cric_cycles``, ``cric_tolerance``,
    ``cric_max_violating``, ``cric_weight``, ``cric_max_evals``, HESSO's ``saliency_weights``,
    plus the common arguments of `ZigOptimizer`.
    """

    needs_loss_fn = True

    def __init__(
        self,
        space: SearchSpace,
        lr: float = 0.1,
        *,
        loss_fn: Callable[[], torch.Tensor | float] | None = None,
        cric_cycles: int = 3,
        cric_tolerance: float = 0.05,
        cric_max_violating: float = 0.05,
        cric_weight: float = 1.0,
        cric_max_evals: int = 256,
        **common: Any,
    ) -> None:
        if loss_fn is None or not callable(loss_fn):
            raise ValueError(
                "HESSOCRIC needs loss_fn: a callable returning the loss on a few batches"
            )
        super().__init__(space, lr, **common)
        if cric_cycles < 1 or cric_max_evals < 0 or cric_tolerance < 0:
            raise ValueError("need cric_cycles >= 1, cric_max_evals >= 0, cric_tolerance >= 0")
        self.loss_fn = loss_fn
        self.cric_cycles = cric_cycles
        self.cric_tolerance = cric_tolerance
        self.cric_max_violating = cric_max_violating
        self.cric_weight = cric_weight
        self.cric_max_evals = cric_max_evals
        self.cric_log: list[dict[str, int]] = []

    def _loss(self) -> float:
        # FSDP2: gathered afresh (the weights changed in place since the last forward), and
        # the ranks' mean, so that every rank measures and excludes the same ZIGs and runs the
        # same number of (collective) forward passes
        reshard(self.space.model)
        return self.shards.mean(float(self.loss_fn()), self._device())

    @torch.no_grad()
    def _ratios(self, zigs: list[int], base: float) -> dict[int, float]:
        """Loss ratio with each ZIG of ``zigs`` zeroed alone (weights restored after each)."""
        out = {}
        for z in zigs:
            one = torch.zeros(self.space.num_zigs, dtype=torch.bool)
            one[z] = True
            one_ext, keep_ext = ext(one, False), ext((~one).double(), 1.0)
            saved = []
            for i in self.view.with_zigs:
                if self.view.touches(i, one_ext):
                    p = self._local[i]
                    saved.append((p, p.detach().clone()))
                    p.mul_(self.view.multiplier(i, p, keep_ext))
            out[z] = self._loss() / max(base, 1e-12)
            for p, v in saved:
                p.copy_(v)
        return out

    def _choose(self, t: int, dirs: dict[int, torch.Tensor], fraction: float) -> torch.Tensor:
        sal = self._score(t, dirs)
        model = self.space.model
        modes = {m: m.training for m in model.modules()}
        model.eval()
        try:
            base = self._loss()
            ratio = torch.ones(self.space.num_zigs, dtype=torch.float64)
            measured = torch.zeros(self.space.num_zigs, dtype=torch.bool)
            excluded = torch.zeros_like(measured)
            evals, n_viol = 0, 0
            for _cycle in range(self.cric_cycles):
                score = torch.where(excluded, torch.full_like(sal, float("inf")), sal)
                chosen = self.target.select(self.space, fraction, score, self.zero, self.pool)
                chosen &= ~self.zero
                todo = torch.nonzero(chosen & ~measured).flatten()
                todo = todo[torch.sort(sal[todo], stable=True).indices]
                todo = todo[: max(0, self.cric_max_evals - evals)].tolist()
                for z, r in self._ratios(todo, base).items():
                    ratio[z] = r
                measured[todo] = True
                evals += len(todo)
                violating = chosen & (ratio > 1 + self.cric_tolerance)
                n_viol = int(violating.sum())
                excluded |= violating
                if n_viol <= self.cric_max_violating * max(1, int(chosen.sum())):
                    break
        finally:
            for m, mode in modes.items():
                m.train(mode)
            reshard(self.space.model)  # FSDP2: the next forward gathers the updated weights
        term = (ratio - 1).clamp(min=0)
        norm = term[measured].norm()
        if norm > 0:
            term = term / norm
        final = sal + self.cric_weight * term
        final = torch.where(excluded, final + final.abs().max() + 1.0, final)
        self.cric_log.append(
            {"step": t, "evals": evals, "violating": n_viol, "excluded": int(excluded.sum())}
        )
        return self._select(fraction, final, self.zero)
