"""Stage 1 of the pipeline: capture a model's ATen graph with `torch.export` (non-strict).

Handles positional, keyword and dict inputs, models on CPU or `meta`, eval-mode export with the
caller's mode restored, and outputs that hold non-tensor objects (e.g. Hugging Face caches).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

import torch
from torch import nn
from torch.export import Dim
from torch.fx.experimental import symbolic_shapes

from .pristine import pristine


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


@dataclass
class OutputTemplate:
    """The model's output with every tensor replaced by its index in the flat list (in the
    order of `trace._tensor_leaves`); non-tensor leaves that cannot be rebuilt are named in
    ``dropped`` and come back as None."""

    tree: Any
    dropped: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, out: Any) -> OutputTemplate:
        counter, dropped = iter(range(1 << 62)), []
        return cls(_encode(out, counter, dropped, "output"), dropped)

    def rebuild(self, leaves: tuple | list) -> Any:
        return _decode(self.tree, list(leaves))


def _encode(x: Any, counter, dropped: list[str], path: str) -> Any:
    if isinstance(x, torch.Tensor):
        return ("tensor", next(counter))
    if isinstance(x, dict):  # includes transformers' ModelOutput (a dict and a dataclass)
        items = [(k, _encode(v, counter, dropped, f"{path}[{k!r}]")) for k, v in x.items()]
        return ("dict", type(x), items)
    if isinstance(x, (tuple, list)):
        kids = [_encode(v, counter, dropped, f"{path}[{i}]") for i, v in enumerate(x)]
        return ("seq", type(x), kids)
    if x is None or isinstance(x, (bool, int, float, str)):
        return ("const", x)
    dropped.append(f"{path} ({type(x).__name__})")
    return ("const", None)


def _decode(node: Any, leaves: list) -> Any:
    kind = node[0]
    if kind == "tensor":
        return leaves[node[1]]
    if kind == "const":
        return node[1]
    if kind == "dict":
        cls, items = node[1], [(k, _decode(v, leaves)) for k, v in node[2]]
        if is_dataclass(cls):  # ModelOutput: keyword construction keeps its field order
            names = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in items if k in names})
        return cls(items)
    cls, kids = node[1], [_decode(v, leaves) for v in node[2]]
    if hasattr(cls, "_fields"):  # namedtuple
        return cls(*kids)
    return cls(kids)


class TensorOutputs(nn.Module):
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
    output: OutputTemplate | None = None  # the structure of the model's output
    params: dict[str, str] = field(default_factory=dict)
    buffers: dict[str, str] = field(default_factory=dict)
    user_inputs: list[str] = field(default_factory=list)

    @property
    def graph(self) -> torch.fx.Graph:
        return self.program.graph


MODEL_PREFIX = "model."  # the user model inside `TensorOutputs`, as named in the program


def _canonical_names(model: nn.Module) -> tuple[dict[int, str], dict[int, str]]:
    params = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        params.setdefault(id(p), name)
    buffers = {}
    for name, b in model.named_buffers(remove_duplicate=False):
        buffers.setdefault(id(b), name)
    return params, buffers


def concrete(size: Any, where: str = "") -> int:
    """A traced size as an int: symbolic sizes (a dynamic batch) give their example value. A
    size that depends on tensor values (``x[mask]``, ``nonzero``) has none: TraceError."""
    if isinstance(size, int):
        return size
    if not symbolic_shapes.has_guarding_hint(size):
        raise TraceError(
            f"cannot analyse the model: the size of {where or 'a traced value'} depends on "
            "tensor values (boolean-mask indexing, nonzero, unique...), so channels cannot be "
            "followed through it; index with a fixed index tensor instead, or exclude that part")
    return int(symbolic_shapes.optimization_hint(size))


def batch_size(args: tuple, kwargs: dict) -> int | None:
    """The batch size of example inputs: the most common size of dim 0 among the tensors (the
    inputs of that size are taken as batch-major); None without tensor inputs."""
    leads = [x.shape[0] for x in (*args, *kwargs.values())
             if isinstance(x, torch.Tensor) and x.dim() > 0]
    return max(set(leads), key=leads.count) if leads else None


def _dynamic_batch(args: tuple, kwargs: dict) -> tuple[tuple, dict, tuple]:
    """Inputs whose dim 0 is the batch get a dynamic dim 0; a batch of 1 is repeated to 2
    first (torch.export specialises sizes 0 and 1)."""
    batch = batch_size(args, kwargs)
    if batch is None:
        raise TraceError("no tensor input has a batch dimension")

    def one(x):
        if isinstance(x, torch.Tensor) and x.dim() > 0 and x.shape[0] == batch:
            return (x.repeat(2, *[1] * (x.dim() - 1)) if batch == 1 else x), {0: Dim.AUTO}
        return x, None

    a = [one(x) for x in args]
    k = {n: one(x) for n, x in kwargs.items()}
    specs = (tuple(s for _, s in a), {n: s for n, (_, s) in k.items()}) if kwargs else (
        tuple(s for _, s in a),)
    return tuple(x for x, _ in a), {n: x for n, (x, _) in k.items()}, specs


def trace(model: nn.Module, example_inputs: Any, *, dynamic_batch: bool = False) -> Traced:
    """Export ``model`` on ``example_inputs`` in eval mode and map graph inputs to names.
    With ``dynamic_batch`` the batch size stays symbolic (for the slim traced program)."""
    args, kwargs = normalize_inputs(example_inputs)
    shapes = None
    if dynamic_batch:
        args, kwargs, shapes = _dynamic_batch(args, kwargs)
    with pristine(model):  # the forward may cache traced tensors on the model: none stay
        model.eval()
        try:
            program = torch.export.export(TensorOutputs(model), args, kwargs,
                                          dynamic_shapes=shapes, strict=False)
        except Exception as exc:  # noqa: BLE001 - re-raised with a diagnosis
            raise TraceError(_diagnose(exc)) from exc
    template = _output_template(model, args, kwargs)

    pid, bid = _canonical_names(model)
    sig = program.graph_signature
    traced = Traced(program, model, args, kwargs, template)
    for node_name, target in sig.inputs_to_parameters.items():
        p = model.get_parameter(target.removeprefix(MODEL_PREFIX))
        traced.params[node_name] = pid[id(p)]
    for node_name, target in sig.inputs_to_buffers.items():
        b = model.get_buffer(target.removeprefix(MODEL_PREFIX))
        traced.buffers[node_name] = bid.get(id(b), target.removeprefix(MODEL_PREFIX))
    traced.user_inputs = list(sig.user_inputs)
    return traced


def _output_template(model: nn.Module, args: tuple, kwargs: dict) -> OutputTemplate | None:
    """The structure of the model's output (export sees only its tensors), from one eager run
    in eval mode; None where the model cannot run eagerly (e.g. on the meta device)."""
    if any(p.is_meta for p in model.parameters()):
        return None
    with pristine(model):
        model.eval()
        try:
            with torch.no_grad():
                return OutputTemplate.of(model(*args, **kwargs))
        except Exception:  # noqa: BLE001 - export ran the same code; a slim program: a tuple
            return None


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
