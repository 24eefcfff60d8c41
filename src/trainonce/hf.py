"""Hugging Face round-trip of a slim model whose layers differ in width: `save_pretrained`
writes the full config plus the cut (per-layer sizes, recipe), `from_pretrained` rebuilds it."""

from __future__ import annotations

import copy
import importlib
import json
import os
from dataclasses import replace
from pathlib import Path

from torch import nn

from .atomic import atomic_dir, recover_dir
from .subnet.hf import FULL_SIZES
from .subnet.recipe import Recipe, rebuild

FIELD = "trainonce"  # the config.json field holding the cut
WEIGHTS = "model.safetensors"
LOAD_WITH = "trainonce.hf.from_pretrained(path)"
CARD = """# Slim model pruned with trainonce

Layers of this {arch} have different widths, which one stock config cannot describe, so
transformers' own `from_pretrained` fails on the sizes. Load it with:

```python
import trainonce.hf
model = trainonce.hf.from_pretrained("path/to/this/directory")
```

`config.json` holds the full model's config; its `trainonce` field holds the kept size of every
cut tensor (`layer_sizes`) and the recipe of the cut.
"""


def save_pretrained(slim: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``slim`` (a Hugging Face model cut by `trainonce.construct_subnet`) to the
    directory ``path``: ``config.json`` is the full model's config plus a ``trainonce`` field
    (per-layer sizes, the recipe, and how to load), ``model.safetensors`` the slim weights.
    Reload with `from_pretrained`; transformers' own ``from_pretrained`` cannot build layers
    of different widths from one config and fails on the sizes."""
    recipe = getattr(slim, "trainonce_recipe", None)
    config = getattr(slim, "config", None)
    if not isinstance(recipe, Recipe) or not hasattr(config, "save_pretrained"):
        raise ValueError("save_pretrained() takes a Hugging Face model returned by "
                         "trainonce.construct_subnet")
    if recipe.kind != "eager":
        raise ValueError("this slim model is a traced program, not the Hugging Face class: "
                         "save it with trainonce.save")
    from .io import file_sha256, safetensors_module

    full = _full_config(config)
    target = Path(os.path.realpath(path))
    if target.exists() and not target.is_dir():
        raise ValueError(f"{target} is a file: save_pretrained() writes a directory")
    with atomic_dir(target) as tmp:  # config and weights replace a previous save together
        safetensors_module().save_model(slim, str(tmp / WEIGHTS), metadata={"format": "pt"})
        signed = replace(recipe, weights_sha256=file_sha256(tmp / WEIGHTS))
        setattr(full, FIELD, {"load_with": LOAD_WITH, "layer_sizes": layer_sizes(recipe),
                              "recipe": json.loads(signed.to_json())})
        full.save_pretrained(str(tmp))
        (tmp / "README.md").write_text(CARD.format(arch=recipe.architecture))
    return Path(path)


def from_pretrained(path: str | os.PathLike, model_class: type[nn.Module] | None = None
                    ) -> nn.Module:
    """Rebuild a slim model written by `save_pretrained`: the full model from the saved config
    (``model_class``, default the transformers class the recipe names), cut per the recipe,
    then the slim weights loaded (strictly). Returned in eval mode, like every trainonce loader
    (`trainonce.load`, `trainonce.load_run`) and transformers' own ``from_pretrained``; call
    ``.train()`` to train it further."""
    from transformers import AutoConfig

    path = Path(path)
    recover_dir(path)
    config = AutoConfig.from_pretrained(str(path))
    cut = getattr(config, FIELD, None)
    if not isinstance(cut, dict) or "recipe" not in cut:
        raise ValueError(f"{path} was not written by trainonce.hf.save_pretrained (its config "
                         f"has no '{FIELD}' field): load it with transformers")
    recipe = Recipe.from_json(json.dumps(cut["recipe"]))
    from .io import file_sha256, safetensors_module

    weights = path / WEIGHTS
    if not weights.is_file() or file_sha256(weights) != recipe.weights_sha256:
        raise ValueError(f"{weights} is missing or not the weights file saved with "
                         f"{path / 'config.json'}: save the model again")
    delattr(config, FIELD)
    cls = model_class or _transformers_class(recipe.architecture)
    slim = rebuild(recipe, cls(config))

    try:
        safetensors_module().load_model(slim, str(weights), strict=True)
    except (OSError, RuntimeError) as exc:
        raise ValueError(f"the weights in {path / WEIGHTS} do not fit the slim model "
                         f"({exc})") from exc
    return slim.eval()


def layer_sizes(recipe: Recipe) -> dict[str, dict[str, int]]:
    """Kept size of every cut tensor dimension: ``{"...intermediate.dense.weight": {"0": 40}}``."""
    return {name: {str(d): len(k) for d, k in dims.items()} for name, dims in
            recipe.removed.items()}


def _full_config(config):
    """A copy of a slim model's config with the uniform sizes the cut wrote put back."""
    full = copy.deepcopy(config)
    for key, value in (getattr(full, FULL_SIZES, None) or {}).items():
        setattr(full, key, value)
    if hasattr(full, FULL_SIZES):
        delattr(full, FULL_SIZES)
    return full


def _transformers_class(architecture: str) -> type[nn.Module]:
    module, _, name = architecture.rpartition(".")
    if not module.startswith("transformers."):
        raise ValueError(f"the recipe names {architecture}, not a transformers class: pass "
                         "model_class=")
    return getattr(importlib.import_module(module), name)
