"""Stage 1 of the pipeline: capture a model's ATen graph with `torch.export` (non-strict).

Handles positional, keyword and dict inputs, models on CPU or `meta`, eval-mode export with the
caller's mode restored, and outputs that hold non-tensor objects (e.g. Hugging Face caches).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


class TraceError(RuntimeError):
    """The model could not be captured as a graph; the message says why and what to try."""


def normalize_inputs(example_inputs: Any) -> tuple[tuple, dict]:
    """A tensor, a tuple/list of positional args, or a dict of keyword args -> (args, kwargs)."""
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,), {}
    if isinstance(example_inputs, dict):
        return (), dict(example_inputs)
    if isinstance(example_inputs, (tuple, list)):
        if (
            len(example_inputs) == 2
            and isinstance(example_inputs[0], (tuple, list))
            and isinstance(example_inputs[1], dict)
        ):
            return tuple(example_inputs[0]), dict(example_inputs[1])
        return tuple(example_inputs), {}
    raise TypeError(
        "example_inputs must be a tensor, a tuple of positional arguments or a dict of keyword "
        f"arguments, got {type(example_inputs).__name__}"
    )


def _tensor_leaves(out: Any) -> list[torch.Tensor]:
    """Tensors in a model's output, in a stable order; other objects (caches...) are dropped."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):  # includes transformers' ModelOutput
        return [t for v in out.values() for t in _tensor_leaves(v)]
    if isinstance(out, (tuple, list)):
        return [t for v in out for t in _tensor_leaves(v)]
    return []


class _TensorOutputs(nn.Module):
    """Wraps a model so its output is a flat tuple of tensors (what `torch.export` needs)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args, **kwargs):
        return tuple(_tensor_leaves(self.model(*args, **kwargs)))


@dataclass
class Traced:
    """An exported program plus name maps back to the user's model."""

    program: torch.export.ExportedProgram
    model: nn.Module
    args: tuple
    kwargs: dict
    # placeholder node name -> canonical parameter / buffer name in `model`
    params: dict[str, str] = field(default_factory=dict)
    buffers: dict[str, str] = field(default_factory=dict)
    user_inputs: list[str] = field(default_factory=list)

    @property
    def graph(self) -> torch.fx.Graph:
        return self.program.graph


_PREFIX = "model."


def _canonical_names(model: nn.Module) -> tuple[dict[int, str], dict[int, str]]:
    params = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        params.setdefault(id(p), name)
    buffers = {}
    for name, b in model.named_buffers(remove_duplicate=False):
        buffers.setdefault(id(b), name)
    return params, buffers


def trace(model: nn.Module, example_inputs: Any) -> Traced:
    """Export ``model`` on ``example_inputs`` in eval mode and map graph inputs to names."""
    args, kwargs = normalize_inputs(example_inputs)
    was_training = model.training
    model.eval()
    try:
        program = torch.export.export(_TensorOutputs(model), args, kwargs, strict=False)
    except Exception as exc:  # noqa: BLE001 - re-raised with a diagnosis
        raise TraceError(_diagnose(exc)) from exc
    finally:
        model.train(was_training)

    pid, bid = _canonical_names(model)
    sig = program.graph_signature
    traced = Traced(program, model, args, kwargs)
    for node_name, target in sig.inputs_to_parameters.items():
        p = model.get_parameter(target.removeprefix(_PREFIX))
        traced.params[node_name] = pid[id(p)]
    for node_name, target in sig.inputs_to_buffers.items():
        b = model.get_buffer(target.removeprefix(_PREFIX))
        traced.buffers[node_name] = bid.get(id(b), target.removeprefix(_PREFIX))
    traced.user_inputs = list(sig.user_inputs)
    return traced


def _diagnose(exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}"
    first = text.strip().splitlines()[0][:500]
    lowered = text.lower()
    if "data-dependent" in lowered or "guardonDataDependent".lower() in lowered or (
        "could not guard" in lowered
    ):
        hint = (
            "the model's control flow depends on tensor values (e.g. `if x.sum() > 0`), which "
            "cannot be captured as one graph; rewrite it with torch.where/torch.cond or exclude "
            "that branch"
        )
    elif any(w in lowered for w in ("shape", "size", "match", "expected input")):
        hint = "the example inputs do not fit the model: check their shapes and dtypes"
    else:
        hint = "torch.export could not capture the model with these example inputs"
    return f"cannot trace the model: {hint}.\n  torch.export said: {first}"
