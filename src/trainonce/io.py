"""Saving and loading slim models: the files only (weights as safetensors, the recipe as JSON);
what a recipe means lives in `trainonce.subnet.recipe`. No pickled modules."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import ModuleType

from torch import nn

from .atomic import atomic_dir, recover_dir
from .subnet.recipe import Recipe, rebuild

WEIGHTS = "model.safetensors"
RECIPE = "recipe.json"


def safetensors_module() -> ModuleType:
    """``safetensors.torch``, imported on first use (an optional dependency: the error names the
    extra to install). Shared by `save`/`load` here and the Hugging Face ones in `trainonce.hf`."""
    try:
        import safetensors.torch as st
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("saving needs safetensors: pip install 'trainonce[io]'") from exc
    return st


def file_sha256(file: Path) -> str:
    """Hex SHA-256 of ``file``, read in 1 MiB blocks (the ``weights_sha256`` of a recipe)."""
    h = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save(slim: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``slim`` (from `construct_subnet`) to the directory ``path``: weights in
    ``model.safetensors`` and the recipe, with the weights' SHA-256, in ``recipe.json``.
    Both are written aside and replace a previous save at ``path`` together, so ``path`` must
    be new, empty or a previous save (other files in it are refused). Returns ``path``."""
    recipe = getattr(slim, "trainonce_recipe", None)
    if not isinstance(recipe, Recipe):
        raise ValueError("save() takes a model returned by trainonce.construct_subnet")
    st = safetensors_module()
    path = Path(path)
    target = Path(os.path.realpath(path))
    _check_target(target)
    with atomic_dir(target) as tmp:  # weights and recipe replace a previous save together
        st.save_model(slim, str(tmp / WEIGHTS))
        signed = replace(recipe, weights_sha256=file_sha256(tmp / WEIGHTS))
        (tmp / RECIPE).write_text(signed.to_json())
    return path


def _check_target(target: Path) -> None:
    if target.exists() and not target.is_dir():
        raise ValueError(f"{target} is a file: save() writes a directory")
    other = sorted(p.name for p in target.iterdir()) if target.is_dir() else []
    other = [n for n in other if n not in (WEIGHTS, RECIPE)]
    if other:
        raise ValueError(f"{target} holds other files ({', '.join(other[:3])}): save() replaces "
                         "the whole directory, so give it a new or empty one")


def load(path: str | os.PathLike, model_factory: Callable[[], nn.Module]) -> nn.Module:
    """Rebuild a slim model: ``model_factory()`` gives the full architecture, the recipe cuts
    it, the saved weights fill it. The architecture must match the one that was saved, and the
    weights file the one saved with the recipe. Returned in eval mode, like every trainonce
    loader (`load_run`, `trainonce.hf.from_pretrained`) and ``torch.hub`` / Hugging Face's
    ``from_pretrained``: BatchNorm uses its running statistics; call ``.train()`` to train
    it further."""
    path = Path(path)
    recover_dir(path)  # a save cut short by a crash: its previous version is put back
    recipe = _read_recipe(path)
    weights = path / WEIGHTS
    if recipe.weights_sha256 is not None:  # version 1 recipes carry no hash
        try:
            digest = file_sha256(weights)
        except OSError as exc:
            raise ValueError(f"{path} holds a recipe but no readable weights ({exc})") from exc
        if digest != recipe.weights_sha256:
            raise ValueError(
                f"{weights} is not the weights file saved with {path / RECIPE} (SHA-256 "
                f"{digest[:12]}... instead of {recipe.weights_sha256[:12]}...): it was changed "
                "or replaced since; save the model again")
    slim = rebuild(recipe, model_factory())
    try:
        safetensors_module().load_model(slim, str(weights), strict=True)
    except (OSError, RuntimeError) as exc:
        raise ValueError(f"the weights in {weights} do not fit the slim model ({exc}): "
                         "model_factory must build the configuration that was saved") from exc
    return slim.eval()


def _read_recipe(path: Path) -> Recipe:
    file = path / RECIPE
    try:
        text = file.read_text()
    except OSError as exc:
        raise ValueError(f"{path} holds no readable trainonce recipe ({exc})") from exc
    try:
        return Recipe.from_json(text)
    except ValueError as exc:
        raise ValueError(f"{file}: {exc}") from exc
