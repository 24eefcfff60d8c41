"""Saliency criteria for zero-invariant groups: higher score = more important (kept longer).

Each criterion maps per-ZIG statistics to a score; scores are normalised by their L2 norm over
the candidate ZIGs and combined with user-chosen weights (a name or any callable).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch


@dataclass
class ZigStats:
    """Per-ZIG statistics (float64 ``[num_zigs]``): ``x`` the weights, ``d`` the search
    direction (where the variant step moves them: ``x_new = x + lr * d``)."""

    sq_norm: torch.Tensor  # ||x_g||^2
    dir_sq_norm: torch.Tensor  # ||d_g||^2
    dot: torch.Tensor  # <x_g, d_g>
    numel: torch.Tensor  # |g|, number of scalar entries of the ZIG

    @property
    def norm(self) -> torch.Tensor:
        return self.sq_norm.sqrt()


Criterion = Callable[[ZigStats], torch.Tensor]


def magnitude(s: ZigStats) -> torch.Tensor:
    return s.norm


def avg_magnitude(s: ZigStats) -> torch.Tensor:
    return s.norm / s.numel.clamp(min=1)


def cosine(s: ZigStats) -> torch.Tensor:
    denom = (s.norm * s.dir_sq_norm.sqrt()).clamp(min=1e-30)
    return s.dot / denom + 1.0


def taylor_first(s: ZigStats) -> torch.Tensor:
    return s.dot.abs()


def taylor_second(s: ZigStats) -> torch.Tensor:
    return 0.5 * s.dot.pow(2)


CRITERIA: dict[str, Criterion] = {
    "magnitude": magnitude,
    "avg_magnitude": avg_magnitude,
    "cosine": cosine,
    "taylor_first": taylor_first,
    "taylor_second": taylor_second,
}

HESSO_DEFAULT_WEIGHTS: dict[str, float] = {name: 0.2 for name in CRITERIA}
DHSPG_DEFAULT_WEIGHTS: dict[str, float] = {"cosine": 0.5, "avg_magnitude": 0.5}


def check_weights(weights: Mapping[str | Criterion, float]) -> None:
    for key in weights:
        if isinstance(key, str) and key not in CRITERIA:
            raise ValueError(f"unknown saliency criterion {key!r}; known: {sorted(CRITERIA)}")
        if not isinstance(key, str) and not callable(key):
            raise TypeError(f"saliency criterion must be a name or a callable, got {key!r}")


def saliency_scores(
    stats: ZigStats, weights: Mapping[str | Criterion, float], candidates: torch.Tensor
) -> torch.Tensor:
    """Weighted sum of criteria, each divided by its L2 norm over ``candidates`` (bool mask).

    Returns float64 ``[num_zigs]``; entries outside ``candidates`` are meaningless."""
    total = torch.zeros_like(stats.sq_norm)
    cand = candidates.to(total.device)
    for key, w in weights.items():
        fn = CRITERIA[key] if isinstance(key, str) else key
        c = fn(stats).to(total)
        c = torch.nan_to_num(c, nan=0.0, posinf=0.0, neginf=0.0)
        scale = c[cand].norm().clamp(min=1e-30)
        total += w * c / scale
    return total
