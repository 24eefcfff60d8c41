"""The recipe of a slim model (what was cut from which architecture) and the one sequence that
applies it; `construct_subnet` and `trainonce.load` both go through `apply`."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from ..space.build import MODES, analyze
from ..space.search_space import SearchSpace
from ..spec import stable_module_name
from ..trace import input_specs, inputs_from_specs
from .hf import update_hf_config
from .layer_deletion import delete_layers
from .modules import snapshot_sizes, update_sizes
from .program import slim_program
from .slicing import apply_plan

FORMAT = "trainonce-slim"
VERSION = 3  # 3: nested (dict/list/tuple) input specs; 2: format and version apart,
# weights_sha256, structures; 1: "trainonce-slim/1". Older files still load.
KINDS = ("eager", "program")

Plan = dict[str, dict[int, torch.Tensor]]  # parameter/buffer name -> dim -> kept positions


def architecture_of(model: nn.Module) -> str:
    """The class of ``model`` as a recipe records it: module and qualified name, a class from a
    ``path/to/file.py:factory`` model under the file's stable name (`spec.stable_module_name`:
    ``path.to.file``, wherever the project was copied)."""
    return f"{stable_module_name(type(model).__module__)}.{type(model).__qualname__}"


@dataclass(eq=False)  # tensors inside: compare fields explicitly
class Recipe:
    """What makes a slim model from its full architecture.

    ``kind``: "eager" (the model's own modules, cut) or "program" (the traced program of the
    full model, cut: for forwards that keep stale sizes). ``removed``: kept positions of every
    parameter and buffer that loses some. ``zero_zigs``: ids of the removed ZIGs (a "program"
    recipe re-traces the model on zeros shaped like ``inputs`` and cuts those).
    ``structures``: whole structures removed (erasing mode: ``{"name", "zig"}`` each, plus
    ``"layer"`` in an "eager" recipe: the ``ModuleList`` element deleted with it). ``mode``:
    the `trainonce.analyze` mode the ZIG ids refer to. ``weights_sha256``: hash of the weights
    file saved with it (set by `trainonce.save`).
    """

    kind: str
    architecture: str
    removed: Plan
    zero_zigs: list[int]
    inputs: dict
    notes: list[str] = field(default_factory=list)
    structures: list[dict] = field(default_factory=list)
    weights_sha256: str | None = None
    version: int = VERSION
    mode: str = "prune"
    format: str = FORMAT

    @classmethod
    def of(cls, model: nn.Module, plan: Plan, zero: torch.Tensor, args: tuple, kwargs: dict
           ) -> Recipe:
        """An "eager" recipe cutting ``plan`` from ``model``, traced on ``(args, kwargs)``."""
        return cls("eager", architecture_of(model), plan,
                   torch.nonzero(zero).flatten().tolist(), input_specs(args, kwargs))

    def to_json(self) -> str:
        """The recipe as JSON, always in the current format version."""
        return json.dumps({
            "format": FORMAT, "version": VERSION, "kind": self.kind,
            "architecture": self.architecture,
            "removed": {n: {str(d): k.tolist() for d, k in dims.items()}
                        for n, dims in self.removed.items()},
            "zero_zigs": list(self.zero_zigs), "inputs": self.inputs, "notes": list(self.notes),
            "structures": list(self.structures), "weights_sha256": self.weights_sha256,
            "mode": self.mode,
        })

    @classmethod
    def from_json(cls, text: str) -> Recipe:
        """Parse and check a recipe written by any version so far; a `ValueError` names the
        field at fault."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"not valid JSON ({exc})") from exc
        return _parse(data)

    def example_inputs(self) -> tuple[tuple, dict]:
        """Zeros shaped like the inputs the model was traced on (enough to trace it again)."""
        return inputs_from_specs(self.inputs)

    def zero_mask(self, num_zigs: int) -> torch.Tensor:
        bad = [z for z in self.zero_zigs if z >= num_zigs]
        if bad:
            raise ValueError(f"recipe field 'zero_zigs' names ZIG {bad[0]}, but the model has "
                             f"{num_zigs}: the recipe was made for another configuration")
        zero = torch.zeros(num_zigs, dtype=torch.bool)
        zero[self.zero_zigs] = True
        return zero


def apply(model: nn.Module, recipe: Recipe | Plan, space: SearchSpace | None = None, *,
          full: bool = True) -> nn.Module:
    """Cut ``model`` as ``recipe`` says and return the slim model.

    A plan or an "eager" recipe cuts ``model`` in place (tensors, then the modules' sizes and a
    Hugging Face config) and returns it. A "program" recipe returns the traced program of the
    full ``model`` with cut weights; ``space`` is its search space (traced again from the
    recipe's input shapes when None); ``full`` says ``model`` is not cut yet, so the program
    can be traced again with a dynamic batch size. A recipe goes with the result as
    ``trainonce_recipe``.
    """
    if isinstance(recipe, Recipe) and recipe.kind == "program":
        if space is None:
            space = analyze(model, recipe.example_inputs(), mode=recipe.mode)
        slim = slim_program(space, recipe.zero_mask(space.num_zigs), recipe.removed,
                            source=model if full else None)
        slim.trainonce_recipe = recipe
        return slim
    layers = sorted({st["layer"] for st in recipe.structures if "layer" in st}
                    ) if isinstance(recipe, Recipe) else []
    before = snapshot_sizes(model)
    apply_plan(model, recipe.removed if isinstance(recipe, Recipe) else recipe)  # by old names
    notes = delete_layers(model, layers) if layers else []
    update_sizes(model, before)
    notes += update_hf_config(model)
    if isinstance(recipe, Recipe):
        model.trainonce_recipe = replace(recipe, notes=notes)
    return model


def rebuild(recipe: Recipe, model: nn.Module) -> nn.Module:
    """The slim model of ``recipe`` from a freshly built full ``model`` (weights still to be
    loaded): checks that the recipe fits the model, then `apply`."""
    arch = architecture_of(model)
    if arch != recipe.architecture:
        raise ValueError(
            f"model_factory built {arch}, but the recipe holds a {recipe.architecture}: pass a "
            "factory that builds that class (a class defined in a --model path/to/file.py "
            "is recorded as path.to.file.Class, the file's path from the folder the run was "
            "started in)")
    _check_fits(recipe.removed, model)
    return apply(model, recipe)


def _check_fits(plan: Plan, model: nn.Module) -> None:
    tensors = dict(model.named_parameters(remove_duplicate=False))
    tensors.update(model.named_buffers(remove_duplicate=False))
    for name, dims in plan.items():
        t = tensors.get(name)
        if t is None:
            raise ValueError(f"recipe field 'removed' names '{name}', which the model has no "
                             "parameter or buffer of: the recipe was made for another model")
        for d, keep in dims.items():
            if d >= t.dim() or (keep.numel() and int(keep[-1]) >= t.shape[d]):
                raise ValueError(
                    f"recipe field 'removed' keeps positions of '{name}' (dim {d}) that its "
                    f"shape {tuple(t.shape)} does not have: the recipe was made for another "
                    "configuration")


# ----- parsing with field-level errors -----------------------------------------------------
def _bad(name: str, why: str) -> ValueError:
    return ValueError(f"recipe field '{name}' {why}")


def _get(data: dict, name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    if name not in data:
        if default is not ...:
            return default
        raise _bad(name, "is missing")
    value = data[name]
    if not isinstance(value, kind):
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise _bad(name, f"must be a {want}, not {type(value).__name__}")
    return value


def _index(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _parse_removed(raw: dict) -> Plan:
    plan: Plan = {}
    for name, dims in raw.items():
        if not isinstance(dims, dict):
            raise _bad("removed", f"must map '{name}' to {{dim: positions}}")
        plan[name] = {}
        for d, keep in dims.items():
            if not (isinstance(d, str) and d.isdigit()):
                raise _bad("removed", f"has the dim '{d}' for '{name}': dims are integers")
            ok = isinstance(keep, list) and all(_index(k) for k in keep)
            if not ok or any(a >= b for a, b in zip(keep, keep[1:])):
                raise _bad("removed", f"must list increasing positions >= 0 for '{name}' "
                                      f"(dim {d})")
            plan[name][int(d)] = torch.tensor(keep, dtype=torch.long)
    return plan


def _parse_spec(s: Any, where: str) -> dict:
    if isinstance(s, dict) and isinstance(s.get("dict"), dict):
        for k, v in s["dict"].items():
            _parse_spec(v, f"{where}[{k!r}]")
        return s
    for kind in ("list", "tuple"):
        if isinstance(s, dict) and isinstance(s.get(kind), list):
            for i, v in enumerate(s[kind]):
                _parse_spec(v, f"{where}[{i}]")
            return s
    if isinstance(s, dict) and "tensor" in s:
        shape, dtype = s["tensor"], s.get("dtype")
        if not (isinstance(shape, list) and all(_index(n) for n in shape)):
            raise _bad("inputs", f"has a bad tensor shape at {where}")
        if not isinstance(dtype, str) or not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise _bad("inputs", f"has an unknown dtype {dtype!r} at {where}")
        return s
    if isinstance(s, dict) and "value" in s:
        return s
    raise _bad("inputs", f"needs {{'tensor', 'dtype'}}, {{'value'}}, {{'dict'}}, {{'list'}} or "
                         f"{{'tuple'}} at {where}")


def _parse_inputs(raw: dict) -> dict:
    args, kwargs = raw.get("args"), raw.get("kwargs")
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise _bad("inputs", "must hold 'args' (a list) and 'kwargs' (a dict)")
    for i, s in enumerate(args):
        _parse_spec(s, f"args[{i}]")
    for k, s in kwargs.items():
        _parse_spec(s, f"kwargs['{k}']")
    return raw


def _parse(data: Any) -> Recipe:
    if not isinstance(data, dict):
        raise ValueError("a recipe is a JSON object")
    fmt = data.get("format")
    if fmt == "trainonce-slim/1":
        version = 1
    elif fmt == FORMAT:
        version = _get(data, "version", int)
        if not 1 <= version <= VERSION:
            raise _bad("version", f"is {version}; this trainonce reads versions 1 to {VERSION} "
                                  "(a newer trainonce wrote it: upgrade)")
    else:
        raise _bad("format", f"is {fmt!r}, not {FORMAT!r}: not a trainonce recipe")
    kind = _get(data, "kind", str)
    if kind not in KINDS:
        raise _bad("kind", f"is {kind!r}, not one of {KINDS}")
    zero_zigs = _get(data, "zero_zigs", list)
    if not all(_index(z) for z in zero_zigs):
        raise _bad("zero_zigs", "must list ZIG ids (integers >= 0)")
    notes = _get(data, "notes", list, [])
    structures = _get(data, "structures", list, [])
    if not all(isinstance(st, dict) and isinstance(st.get("name"), str) and _index(st.get("zig"))
               for st in structures):
        raise _bad("structures", "must list {'name': str, 'zig': int} objects")
    mode = _get(data, "mode", str, "prune")
    if mode not in MODES:
        raise _bad("mode", f"is {mode!r}, not one of {MODES}")
    if structures and mode == "prune":
        raise _bad("structures", "needs a recipe made in mode 'erase' or 'both'")
    if kind == "eager" and not all(isinstance(st.get("layer"), str) for st in structures):
        raise _bad("structures", "of an 'eager' recipe must name the deleted 'layer' of each")
    sha = _get(data, "weights_sha256", str) if version >= 2 else None
    if sha is not None and not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise _bad("weights_sha256", "must be 64 lowercase hex digits (a SHA-256)")
    return Recipe(kind, _get(data, "architecture", str),
                  _parse_removed(_get(data, "removed", dict)), zero_zigs,
                  _parse_inputs(_get(data, "inputs", dict)), [str(n) for n in notes],
                  structures, sha, version, mode)
