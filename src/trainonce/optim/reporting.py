"""What a ZIG optimizer reports and resumes from: `metrics` (the weights as they are) and
`state_dict` in torch's shape, the optimizer's own state inside its param group."""

from __future__ import annotations

from typing import Any

import torch

from .budgets import CostBudget

EXTRA = "trainonce"  # the key of the optimizer's own state in `state_dict()`'s param group


class Reporting:
    """Mixed into `ZigOptimizer` (before `torch.optim.Optimizer`, whose ``state_dict`` it
    extends); reads the optimizer's ``space``, ``zero``, step counters and target."""

    space: Any
    zero: torch.Tensor
    prunable: torch.Tensor
    target: Any
    schedule: Any
    _step: int
    skipped_steps: int
    _hold: Any

    def redundant_mask(self) -> torch.Tensor:  # `ZigOptimizer`'s
        raise NotImplementedError

    @torch.no_grad()
    def metrics(self) -> dict[str, float | int | str]:
        """Sparsity and costs of the weights as they are (ZIGs exactly zero in every member
        slice, frozen ones included), not of what the optimizer intended. Under FSDP2 the
        norms are summed over the shards: a collective, every rank calls it."""
        dense_f, dense_p = self.space.flops(), self.space.num_params()
        sq = self.space.zig_sq_norms().cpu()
        zero = (sq == 0) & self.space.prunable_mask
        keep = ~zero
        red = self.redundant_mask() & self.prunable
        n_prunable = max(1, int(self.prunable.sum()))
        out: dict[str, float | int | str] = {
            "step": self._step,
            "phase": self.schedule.phase(self._step),
            "group_sparsity": int((zero & self.prunable).sum()) / n_prunable,
            "flops_kept": self.space.flops(keep) / dense_f if dense_f > 0 else float("nan"),
            "params_kept": self.space.num_params(keep) / dense_p if dense_p > 0 else float("nan"),
            "norm_important": float(sq[~red].sum().sqrt()),
            "norm_redundant": float(sq[red].sum().sqrt()),
            "num_redundant": int(red.sum()),
            "skipped_steps": self.skipped_steps,
        }
        if isinstance(self.target, CostBudget):  # the target's own kept share (latency_kept)
            out[f"{self.target.name}_kept"] = (self.target.cost(self.space, keep)
                                               / self.target.dense(self.space))
        return out

    def _extra_state(self) -> dict[str, torch.Tensor]:
        return {}

    def _load_extra_state(self, extra: dict[str, torch.Tensor]) -> None:
        pass

    def state_dict(self) -> dict:
        """torch's ``{"state", "param_groups"}``, this optimizer's own state (step, masks, the
        subclass's) under ``param_groups[0]["trainonce"]``: tools that rebuild the standard
        shape (`torch.distributed.checkpoint.state_dict.get_optimizer_state_dict`) keep a
        group's keys and drop unknown top-level ones."""
        sd = super().state_dict()
        sd["param_groups"][0][EXTRA] = {
            "step": torch.tensor(self._step, dtype=torch.long),
            "zero": self.zero.clone(),
            "skipped_steps": torch.tensor(self.skipped_steps, dtype=torch.long),
            **self._extra_state(),
        }
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        """Loads `state_dict`'s shape, and the older one with a top-level ``"trainonce"``."""
        state_dict = dict(state_dict)
        extra = state_dict.pop(EXTRA, None)  # checkpoints written before the move
        groups = [dict(g) for g in state_dict["param_groups"]]
        for g in groups:
            mine = g.pop(EXTRA, None)
            extra = mine if mine is not None else extra
        state_dict["param_groups"] = groups
        super().load_state_dict(state_dict)
        if extra is not None:
            self._step = int(extra["step"])
            self.zero = extra["zero"].bool().cpu().clone()
            self.skipped_steps = int(extra.get("skipped_steps", 0))
            self._load_extra_state(extra)
        self._hold = None
