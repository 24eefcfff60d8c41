"""Stage 4 of the pipeline: the physically smaller model that computes what the trained one
computes, checked on the example inputs before it is returned."""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from ..io import input_specs
from ..space.search_space import SearchSpace
from ..trace import _TensorOutputs
from .hf import update_hf_config
from .modules import snapshot_sizes, update_sizes
from .program import slim_program
from .slicing import apply_plan, removal_plan


class SubnetMismatchError(RuntimeError):
    """The slim model does not reproduce the full model's output."""


def construct_subnet(model: nn.Module, space: SearchSpace, *, inplace: bool = False,
                     zero: torch.Tensor | None = None, verify: bool = True) -> nn.Module:
    """Remove every ZIG of ``space`` that is exactly zero in ``model``; return the slim model.

    ``zero`` overrides which ZIGs to remove (e.g. for models on the meta device).
    The slim model is run against ``model`` on the example inputs; a difference above
    1e-5 * max|y| raises `SubnetMismatchError`. If the model's own forward keeps stale sizes,
    the slim model is the traced program with cut weights (a `torch.fx.GraphModule`).
    """
    if space.analysis is None:
        raise ValueError("construct_subnet needs a SearchSpace made by trainonce.analyze")
    on_meta = any(p.is_meta for p in model.parameters())
    if zero is None:
        if on_meta:
            raise ValueError("a model on the meta device has no values: pass zero= explicitly")
        zero = space.zero_mask()
    plan = removal_plan(space, zero)
    slim = model if inplace else copy.deepcopy(model)
    before = snapshot_sizes(slim)
    apply_plan(slim, plan)
    update_sizes(slim, before)
    notes = update_hf_config(slim)
    kind = "eager"
    if verify and not on_meta:
        problem = _mismatch(model, slim, space)
        if problem is not None:
            kind = "program"
            slim = slim_program(space, zero, plan)
            again = _mismatch(model, slim, space)
            if again is not None:
                raise SubnetMismatchError(f"slim model differs from the full model: {again}")
            warnings.warn(
                f"trainonce: {type(model).__name__}'s own forward does not follow the cut "
                f"({problem}); returning the slim traced program (torch.fx.GraphModule) instead",
                stacklevel=2,
            )
    slim.trainonce_recipe = {
        "format": "trainonce-slim/1",
        "kind": kind,
        "architecture": f"{type(model).__module__}.{type(model).__qualname__}",
        "removed": {n: {str(d): k.tolist() for d, k in dims.items()} for n, dims in plan.items()},
        "zero_zigs": torch.nonzero(zero).flatten().tolist(),
        "inputs": input_specs(space.analysis.traced.args, space.analysis.traced.kwargs),
        "notes": notes,
    }
    return slim


def outputs(model: nn.Module, space: SearchSpace) -> list[torch.Tensor]:
    traced = space.analysis.traced
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            if isinstance(model, torch.fx.GraphModule):
                out = model(*traced.args, **traced.kwargs)
                return list(out) if isinstance(out, (tuple, list)) else [out]
            return list(_TensorOutputs(model)(*traced.args, **traced.kwargs))
    finally:
        model.train(was)


def _mismatch(full: nn.Module, slim: nn.Module, space: SearchSpace) -> str | None:
    ref = outputs(full, space)
    try:
        got = outputs(slim, space)
    except Exception as exc:  # noqa: BLE001 - reported, then the fallback is tried
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    if len(ref) != len(got):
        return f"{len(got)} outputs instead of {len(ref)}"
    for i, (a, b) in enumerate(zip(ref, got)):
        if a.shape != b.shape:
            return f"output {i} has shape {tuple(b.shape)} instead of {tuple(a.shape)}"
        if a.is_floating_point():
            scale = float(a.abs().max()) if a.numel() else 0.0
            diff = float((a - b).abs().max()) if a.numel() else 0.0
            if diff > 1e-5 * max(scale, 1e-12):
                return f"output {i} differs by {diff:.3g} (max |y| = {scale:.3g})"
        elif not torch.equal(a, b):
            return f"output {i} differs"
    return None
