"""Stage 1 of the pipeline: capture a model's ATen graph with `torch.export` (non-strict).

Handles positional and keyword inputs (nested dicts, lists and tuples too, recorded for the
recipe by `input_specs`), models on CPU or `meta`, eval-mode export with the caller's mode
restored, and outputs that hold non-tensor objects (e.g. Hugging Face caches).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
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
    """A tensor, a tuple/list of positional args, or a dict of keyword args -> (args, kwargs).

    A dict as the whole example is always keyword arguments (``model(**batch)``, the Hugging
    Face way); a dict (or list, tuple) that is one argument goes inside a tuple: ``(batch,)``
    for ``forward(self, batch)``. Arguments may nest dicts (string keys), lists and tuples of
    tensors, numbers, strings and None."""
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


def tensor_leaves(out: Any) -> list[torch.Tensor]:
    """Tensors in a model's output, in a stable order; other objects (caches...) are dropped."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):  # includes transformers' ModelOutput
        return [t for v in out.values() for t in tensor_leaves(v)]
    if isinstance(out, (tuple, list)):
        return [t for v in out for t in tensor_leaves(v)]
    return []


@dataclass
class OutputTemplate:
    """The model's output with every tensor replaced by its index in the flat list (in the
    order of `trace.tensor_leaves`); non-tensor leaves that cannot be rebuilt are named in
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
        return tuple(tensor_leaves(self.model(*args, **kwargs)))


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


def map_inputs(fn: Callable[[Any], Any], x: Any) -> Any:
    """``fn`` applied to every leaf of an input (inside dicts, lists and tuples), the
    containers rebuilt around the results."""
    if isinstance(x, dict):
        return {k: map_inputs(fn, v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(map_inputs(fn, v) for v in x)
    return fn(x)


def input_leaves(x: Any) -> list[Any]:
    """The leaves of an input (inside dicts, lists and tuples), in order."""
    if isinstance(x, dict):
        return [leaf for v in x.values() for leaf in input_leaves(v)]
    if isinstance(x, (list, tuple)):
        return [leaf for v in x for leaf in input_leaves(v)]
    return [x]


def batch_size(args: tuple, kwargs: dict) -> int | None:
    """The batch size of example inputs: the most common size of dim 0 among the tensors
    (nested ones too; the inputs of that size are taken as batch-major); None without tensor
    inputs."""
    leads = [x.shape[0] for x in input_leaves((args, kwargs))
             if isinstance(x, torch.Tensor) and x.dim() > 0]
    return max(set(leads), key=leads.count) if leads else None


def _dynamic_batch(args: tuple, kwargs: dict) -> tuple[tuple, dict, tuple]:
    """Inputs whose dim 0 is the batch get a dynamic dim 0; a batch of 1 is repeated to 2
    first (torch.export specialises sizes 0 and 1)."""
    batch = batch_size(args, kwargs)
    if batch is None:
        raise TraceError("no tensor input has a batch dimension")

    def batched(x):
        return isinstance(x, torch.Tensor) and x.dim() > 0 and x.shape[0] == batch

    def value(x):
        return x.repeat(2, *[1] * (x.dim() - 1)) if batched(x) and batch == 1 else x

    def spec(x):  # the dynamic_shapes tree mirrors the inputs' containers
        return {0: Dim.AUTO} if batched(x) else None

    specs = (map_inputs(spec, tuple(args)), map_inputs(spec, dict(kwargs))) if kwargs else (
        map_inputs(spec, tuple(args)),)
    return map_inputs(value, tuple(args)), map_inputs(value, dict(kwargs)), specs


def check_inputs(model: nn.Module, example_inputs: Any, kwargs: dict) -> None:
    """Refuse, before any work, an example that cannot be recorded in a recipe, and a dict
    given as the whole example (keyword arguments) whose keys are not ``forward``'s
    parameters, saying what to pass instead."""
    if not isinstance(example_inputs, dict):
        return
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # no signature to check against (a builtin forward)
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = [k for k in example_inputs if k not in params]
    if not unknown:
        return
    positional = [n for n, p in params.items() if p.kind in (
        inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    hint = (f"; to give the dict as forward's one argument '{positional[0]}', pass it inside a "
            "tuple: trainonce.analyze(model, (batch,))" if len(positional) == 1 else
            "; to give a dict as one positional argument, pass a tuple: (batch,) or "
            "(batch, other_arg)")
    raise TypeError(
        f"a dict as example_inputs is taken as keyword arguments, but {type(model).__name__}."
        f"forward has no parameter {', '.join(repr(k) for k in unknown[:3])} (it takes "
        f"{', '.join(params) or 'no arguments'}){hint}")


# ----- recording example inputs (the recipe keeps them to trace again) -----------------------
def _spec(x: Any) -> dict:
    if isinstance(x, torch.Tensor):
        return {"tensor": list(x.shape), "dtype": str(x.dtype).removeprefix("torch.")}
    if isinstance(x, (bool, int, float, str)) or x is None:
        return {"value": x}
    if isinstance(x, dict):
        bad = [k for k in x if not isinstance(k, str)]
        if bad:
            raise TypeError(f"cannot record an example input dict with the key {bad[0]!r}: "
                            "dict keys of example inputs must be strings")
        return {"dict": {k: _spec(v) for k, v in x.items()}}
    if type(x) in (list, tuple):  # a namedtuple would come back as a plain tuple
        return {type(x).__name__: [_spec(v) for v in x]}
    raise TypeError(
        f"cannot record an example input of type {type(x).__name__}: example inputs may be "
        "tensors, numbers, strings, None, and dicts (string keys), lists and tuples of them")


def _unspec(s: dict) -> Any:
    if "tensor" in s:
        return torch.zeros(s["tensor"], dtype=getattr(torch, s["dtype"]))
    if "dict" in s:
        return {k: _unspec(v) for k, v in s["dict"].items()}
    if "list" in s:
        return [_unspec(v) for v in s["list"]]
    if "tuple" in s:
        return tuple(_unspec(v) for v in s["tuple"])
    return s["value"]


def input_specs(args: tuple, kwargs: dict) -> dict:
    """Shapes and dtypes of tensor inputs, values of the others, the containers around them:
    enough to trace again. A `TypeError` names an input that cannot be recorded."""
    return {"args": [_spec(a) for a in args], "kwargs": {k: _spec(v) for k, v in kwargs.items()}}


def inputs_from_specs(specs: dict) -> tuple[tuple, dict]:
    """Zeros shaped like the recorded inputs (`input_specs`), in their containers."""
    return (tuple(_unspec(s) for s in specs["args"]),
            {k: _unspec(s) for k, s in specs["kwargs"].items()})


def trace(model: nn.Module, example_inputs: Any, *, dynamic_batch: bool = False) -> Traced:
    """Export ``model`` on ``example_inputs`` in eval mode and map graph inputs to names.
    With ``dynamic_batch`` the batch size stays symbolic (for the slim traced program)."""
    args, kwargs = normalize_inputs(example_inputs)
    check_inputs(model, example_inputs, kwargs)
    input_specs(args, kwargs)  # recordable: refused now, not at construct_subnet after training
    shapes = None
    if dynamic_batch:
        args, kwargs, shapes = _dynamic_batch(args, kwargs)
    with pristine(model), warnings.catch_warnings():
        # the forward may cache traced tensors on the model (YOLO's anchors); torch.export
        # warns to make them buffers, but `pristine` removes them: nothing for the user to do
        warnings.filterwarnings("ignore", message="The tensor attributes .* were assigned "
                                "during export", category=UserWarning)
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
