"""Calibration against real slim models: a node timed alone runs faster than inside the model
(its weights and inputs stay in the caches), so the table's savings get one factor, fitted on
slim models that `construct_subnet` builds at two cuts and timed end to end against the dense.

Profiled on this machine (1 thread), vit_b_16's traced program ran linear 15% slower than the
same calls alone, attention 20%, gelu 47%. A slim model may also run other code than the dense
forward: vit_b_16's is a traced program, its dense forward takes PyTorch's fused attention.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import torch
from torch import nn

from ..space.search_space import SearchSpace
from ..space.slots import per_position
from .table import LatencyTable
from .timing import time_forwards

# Latency kept (as the uncalibrated table predicts it) at the two calibration cuts: they
# bracket the budgets runs ask for (half the latency and below), so the fitted factor is an
# interpolation there, not an extrapolation
KEPT = (0.6, 0.3)
# a factor outside these is a broken measurement (the slim model ran at another speed than any
# width of its nodes): it is clamped, and the unclamped value kept in the table's meta
ALPHA_RANGE = (0.5, 2.0)


def calibration_cuts(space: SearchSpace, table: LatencyTable, seed: int = 0
                     ) -> list[torch.Tensor]:
    """Zero masks removing the same random share of every prunable channel group, at the
    shares where ``table`` predicts `KEPT` of the dense latency (bisection; nested cuts; the
    deepest cut, every group down to one ZIG, where a target is out of reach)."""
    gen = torch.Generator().manual_seed(seed)
    groups = [g for g in space.groups if g.prunable and g.kind == "channel" and g.size >= 2]
    orders = [g.offset + torch.randperm(g.size, generator=gen) for g in groups]

    def cut(share: float) -> torch.Tensor:
        zero = torch.zeros(space.num_zigs, dtype=torch.bool)
        for g, order in zip(groups, orders):
            zero[order[max(1, round((1 - share) * g.size)):]] = True
        return zero

    out = []
    for target in KEPT:
        lo, hi = 0.0, 1.0
        for _ in range(16):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if table.cost(~cut(mid)) > target * table.dense else (lo, mid)
        out.append(cut(hi))
    return out


def slim_model(space: SearchSpace, zero: torch.Tensor, device: torch.device,
               dtype: torch.dtype) -> nn.Module:
    """The real slim model of ``zero``, built from a copy of the model with those ZIGs zeroed
    (checked against it by `construct_subnet`), on ``device`` in ``dtype``, in eval mode."""
    import trainonce

    model = copy.deepcopy(space.model)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, ps in space.param_slices.items():
            for dim, vec in ps.layers():
                pos = torch.nonzero(per_position(zero, vec, False)).flatten()
                if pos.numel():
                    params[name].index_fill_(dim, pos.to(params[name].device), 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "returning the slim traced program": expected
        slim = trainonce.construct_subnet(model, space, zero=zero)
    return slim.to(device=device, dtype=dtype).eval()


def fit(dense: float, saved: list[float], ratios: list[float]) -> dict:
    """The factor on the table's savings that best matches the measured slim/dense ratios
    (least squares): predicted ratio = 1 - alpha * saved / dense."""
    u = torch.tensor(saved, dtype=torch.float64) / dense
    r = torch.tensor(ratios, dtype=torch.float64)
    raw = float(((1 - r) * u).sum() / (u * u).sum()) if float((u * u).sum()) > 0 else 1.0
    alpha = min(max(raw, ALPHA_RANGE[0]), ALPHA_RANGE[1])
    return {"alpha": alpha, "alpha_fitted": raw,
            "calibration": [{"uncalibrated": 1 - float(x), "measured": float(y)}
                            for x, y in zip(u, r)]}


def calibrate(space: SearchSpace, table: LatencyTable, dense: Callable[[], object],
              args: tuple, kwargs: dict, device: torch.device, dtype: torch.dtype,
              sync: Callable[[], None]) -> dict:
    """Fit the table's factor (see `fit`) on two real slim models timed against ``dense``
    (the dense forward) on the inputs ``args``/``kwargs``; {} with a warning where the slim
    models cannot be built or run."""
    cuts = calibration_cuts(space, table)
    try:
        slims = [slim_model(space, z, device, dtype) for z in cuts]
        with torch.inference_mode():
            runs = [dense, *((lambda s=s: s(*args, **kwargs)) for s in slims)]
            times = time_forwards(runs, sync)
    except Exception as exc:  # noqa: BLE001 - the table stands without calibration
        warnings.warn(f"trainonce latency: predictions not calibrated, the slim models cannot "
                      f"be built or run here ({type(exc).__name__}: {exc})", stacklevel=3)
        return {}
    saved = [table.dense - table.cost(~z) for z in cuts]
    return fit(table.dense, saved, [t / times[0] for t in times[1:]])
