"""Stage 4 of the pipeline: the physically smaller model that computes what the trained one
computes, checked on the example input and on a random one before it is returned."""

from __future__ import annotations

import copy
import warnings
from dataclasses import replace

import torch
from torch import nn

from ..space.search_space import SearchSpace
from .layer_deletion import deletable_layers
from .recipe import Recipe, apply
from .slicing import removal_plan
from .verify import OTHER_BATCH, Reference, run


class SubnetMismatchError(RuntimeError):
    """The slim model does not reproduce the full model's output."""


def construct_subnet(model: nn.Module, space: SearchSpace, *, inplace: bool = False,
                     zero: torch.Tensor | None = None, verify: bool = True) -> nn.Module:
    """Remove every ZIG of ``space`` that is exactly zero in ``model``; return the slim model.

    ``zero`` overrides which ZIGs to remove (e.g. for models on the meta device).
    The slim model is run against ``model`` on the example inputs and on random inputs of the
    same shapes (`trainonce.subnet.verify.mismatch`); a difference above the tolerance of the
    output dtype (1e-5 * max|y| for float32, re-checked in float64) raises
    `SubnetMismatchError`. If the model's own forward keeps stale sizes, the slim model is the
    traced program with cut weights (a `torch.fx.GraphModule`). The recipe of the cut goes with
    the slim model as ``trainonce_recipe`` (see `trainonce.save`).
    """
    analysis = space.analysis
    if analysis is None:
        raise ValueError("construct_subnet needs a SearchSpace made by trainonce.analyze")
    on_meta = any(p.is_meta for p in model.parameters())
    if zero is None:
        if on_meta:
            raise ValueError("a model on the meta device has no values: pass zero= explicitly")
        zero = space.zero_mask()
    erased = [(st, z) for st, z in analysis.structures if bool(zero[z])]
    if erased:
        why = space.invalid_reason(zero)
        if why is not None:
            raise ValueError(f"cannot build the slim model: {why}")
    recipe = Recipe.of(model, removal_plan(space, zero), zero, analysis.traced.args,
                       analysis.traced.kwargs)
    recipe = replace(recipe, mode=space.mode,
                     structures=[{"name": st.name, "zig": z} for st, z in erased])
    reference = None
    if verify and not on_meta:
        # cut in place, ``model`` is the slim model: the trace still holds the full weights
        full = _traced_model(space) if inplace else model
        reference = Reference(full, analysis.traced.args, analysis.traced.kwargs)
    layers = deletable_layers(model, erased)
    if erased and layers is None:  # the model's classes cannot express it: rewrite the graph
        return _program(model, replace(recipe, kind="program"), space, True, reference)
    if layers:  # whole transformer layers go: deleted from their ModuleList
        recipe = replace(recipe, structures=[
            {**st, "layer": _layer_of(s.params[0], layers)}
            for st, (s, _) in zip(recipe.structures, erased)])
    slim = apply(model if inplace else copy.deepcopy(model), recipe)
    problem = reference.mismatch(slim) if reference is not None else None
    if problem is not None:
        slim = _program(model, replace(slim.trainonce_recipe, kind="program"), space,
                        not inplace, reference)
        warnings.warn(
            f"trainonce: {type(model).__name__}'s own forward does not follow the cut "
            f"({problem}); returning the slim traced program instead (same inputs and "
            "outputs, BatchNorm/Dropout as in eval mode)", stacklevel=2)
    return slim


def _program(model: nn.Module, recipe: Recipe, space: SearchSpace, full: bool,
             reference: Reference | None) -> nn.Module:
    """The slim traced program of ``recipe``, checked against ``reference`` when given."""
    slim = apply(model, recipe, space, full=full)
    if reference is None:
        return slim
    fixed = slim.fixed_batch is not None
    again = reference.mismatch(slim, skip=(OTHER_BATCH,) if fixed else ())
    if again is not None:
        raise SubnetMismatchError(f"slim model differs from the full model: {again}")
    if fixed:
        warnings.warn(
            f"trainonce: the slim program of {type(model).__name__} runs only at the "
            f"example's batch size (tracing it with a dynamic batch failed: "
            f"{slim.fixed_batch})", stacklevel=3)
    return slim


def _layer_of(param: str, layers: list[str]) -> str:
    return next(layer for layer in layers if param.startswith(layer + "."))


def outputs(model: nn.Module, space: SearchSpace) -> list[torch.Tensor]:
    """The tensors ``model`` outputs on the example inputs ``space`` was traced on."""
    traced = space.analysis.traced
    return run(model, traced.args, traced.kwargs)


def _traced_model(space: SearchSpace) -> nn.Module:
    """The full model as traced (its weights as they were before any cut)."""
    unlifted = space.analysis.traced.program.module()
    return torch.fx.GraphModule(unlifted, unlifted.graph)  # supports eval(), unlike `unlifted`

