"""ATO's final budget correction: the controller's mask, cut or extended in the controller's own
preference order until the exact kept FLOPs/params meet the target.
"""

from __future__ import annotations

import torch

from ..space import SearchSpace
from .budgets import CostBudget
from .targets import Pool, fill_budget
from .units import removal_units


def fit_budget(
    space: SearchSpace,
    budget: CostBudget,
    fraction: float,
    logits: torch.Tensor,
    keep: torch.Tensor,
    already: torch.Tensor,
    pool: Pool,
    tol: float = 0.002,
    refine: int = 128,
) -> torch.Tensor:
    """Bool ``[num_zigs]``: the ZIGs to zero so that the kept ``budget`` cost is at most
    ``fraction`` of the dense one and, where one ZIG's granularity allows, within ``tol`` of it.

    Removal order: ``already``, then the ZIGs the mask ``keep`` turns off from the most to the
    least confident (ascending ``logits``), then the kept ones, again by ascending logit; every
    channel group keeps its highest-logit ZIG (its best block when aligned), and removed
    structures stay valid. The shortest
    prefix of that order meeting the budget is taken, so a mask already on budget is returned
    as it is (up to one ZIG), a mask over it is extended and one under it gives back its least
    confident removals.
    """
    dense = budget.dense(space)

    def cost_fn(keep: torch.Tensor) -> float:
        return budget.cost(space, keep)

    logits = logits.detach().double().cpu()
    already = already.bool().cpu()
    # the ZIGs the mask turns off before every kept one, each tier by ascending logit
    span = float(logits.max() - logits.min()) + 1.0 if logits.numel() else 1.0
    key = torch.where(keep.cpu().bool(), logits + span, logits)
    units = removal_units(pool, key, already)  # every channel group keeps its best ZIG/block
    chosen = fill_budget(units, already, cost_fn, fraction * dense, (fraction - tol) * dense,
                         pool, refine)
    if chosen is None:  # unreachable here: check_reachable refused such targets
        chosen = already.clone()
        chosen[units.zigs] = True
    return chosen
