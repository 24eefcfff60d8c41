"""The step schedule shared by the optimizers: warm-up, pruning periods, training with zeros
fixed; safe defaults derived from ``total_steps``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    """Warm-up ``[0, start)``; pruning ``[start, end)`` in ``periods`` periods of ``length``
    steps; then training continues with the zero ZIGs fixed. ``total`` is the ``total_steps``
    it was derived from (None when the phases were given): the record of the run length an
    integration passed (its tests read it)."""

    start: int
    periods: int
    length: int
    total: int | None = None

    @property
    def end(self) -> int:
        return self.start + self.periods * self.length

    @classmethod
    def from_args(
        cls,
        total_steps: int | None,
        start_pruning_step: int | None,
        pruning_steps: int | None,
        pruning_periods: int | None,
    ) -> Schedule:
        if total_steps is not None:
            if total_steps < 3:
                raise ValueError(f"total_steps must be >= 3, got {total_steps}")
            if start_pruning_step is None:
                start_pruning_step = max(1, round(0.15 * total_steps))
            if pruning_steps is None:
                pruning_steps = max(1, round(0.45 * total_steps))
        elif start_pruning_step is None or pruning_steps is None:
            raise ValueError(
                "give total_steps (the schedule is derived from it) or both "
                "start_pruning_step and pruning_steps"
            )
        if pruning_periods is None:
            pruning_periods = min(10, pruning_steps)
        if start_pruning_step < 0 or pruning_steps < 1 or pruning_periods < 1:
            raise ValueError(
                "need start_pruning_step >= 0, pruning_steps >= 1, pruning_periods >= 1"
            )
        if pruning_periods > pruning_steps:
            raise ValueError(
                f"pruning_periods ({pruning_periods}) > pruning_steps ({pruning_steps})"
            )
        s = cls(start_pruning_step, pruning_periods, pruning_steps // pruning_periods, total_steps)
        if total_steps is not None and s.end > total_steps:
            raise ValueError(f"pruning ends at step {s.end}, after total_steps={total_steps}")
        return s

    def phase(self, t: int) -> str:
        return "warmup" if t < self.start else ("pruning" if t < self.end else "training")

    def position(self, t: int) -> tuple[int, int]:
        """(period index, step within period) of pruning step ``t``."""
        return divmod(t - self.start, self.length)
