"""Saving and loading slim models: weights as safetensors, plus a small JSON recipe of what was
removed from which architecture. No pickled modules; files are written atomically."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

WEIGHTS = "model.safetensors"
RECIPE = "recipe.json"


def _safetensors():
    try:
        import safetensors.torch as st
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("saving needs safetensors: pip install 'trainonce[io]'") from exc
    return st


def _spec(x):
    if isinstance(x, torch.Tensor):
        return {"tensor": list(x.shape), "dtype": str(x.dtype).removeprefix("torch.")}
    if isinstance(x, (bool, int, float, str)) or x is None:
        return {"value": x}
    raise TypeError(f"cannot record an example input of type {type(x).__name__}")


def _unspec(s):
    if "tensor" in s:
        return torch.zeros(s["tensor"], dtype=getattr(torch, s["dtype"]))
    return s["value"]


def input_specs(args: tuple, kwargs: dict) -> dict:
    return {"args": [_spec(a) for a in args], "kwargs": {k: _spec(v) for k, v in kwargs.items()}}


def save(slim: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``slim`` (from `construct_subnet`) to the directory ``path``: weights in
    ``model.safetensors`` and the recipe in ``recipe.json``. Returns the directory."""
    recipe = getattr(slim, "trainonce_recipe", None)
    if recipe is None:
        raise ValueError("save() takes a model returned by trainonce.construct_subnet")
    st = _safetensors()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        st.save_model(slim, str(tmp / WEIGHTS))
        (tmp / RECIPE).write_text(json.dumps(recipe))
        path.mkdir(exist_ok=True)
        for name in (WEIGHTS, RECIPE):  # each file replaced atomically
            os.replace(tmp / name, path / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def load(path: str | os.PathLike, model_factory: Callable[[], nn.Module]) -> nn.Module:
    """Rebuild a slim model: ``model_factory()`` gives the full architecture, the recipe cuts
    it, the saved weights fill it. The architecture must match the one that was saved."""
    from .subnet.hf import update_hf_config
    from .subnet.modules import snapshot_sizes, update_sizes
    from .subnet.slicing import apply_plan

    path = Path(path)
    try:
        recipe = json.loads((path / RECIPE).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} holds no readable trainonce recipe ({exc})") from exc
    if recipe.get("format") != "trainonce-slim/1":
        raise ValueError(f"{path / RECIPE} is not a trainonce recipe")
    model = model_factory()
    arch = f"{type(model).__module__}.{type(model).__qualname__}"
    if arch != recipe["architecture"]:
        raise ValueError(f"model_factory built {arch}, but {path} holds a {recipe['architecture']}")
    plan = {n: {int(d): torch.tensor(k, dtype=torch.long) for d, k in dims.items()}
            for n, dims in recipe["removed"].items()}
    if recipe["kind"] == "program":
        from .space.build import analyze
        from .subnet.program import slim_program

        inputs = recipe["inputs"]
        args = tuple(_unspec(s) for s in inputs["args"])
        kwargs = {k: _unspec(s) for k, s in inputs["kwargs"].items()}
        space = analyze(model, (args, kwargs))
        zero = torch.zeros(space.num_zigs, dtype=torch.bool)
        zero[recipe["zero_zigs"]] = True
        slim = slim_program(space, zero, plan)
    else:
        before = snapshot_sizes(model)
        apply_plan(model, plan)
        update_sizes(model, before)
        update_hf_config(model)
        slim = model
    _safetensors().load_model(slim, str(path / WEIGHTS), strict=True)
    slim.trainonce_recipe = recipe
    return slim
