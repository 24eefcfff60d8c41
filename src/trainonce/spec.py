"""Resolve a user's ``module:function`` or ``path/to/file.py:function`` spec (their own model
factory or dataset function), importable from the current directory without sys.path edits."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from importlib.machinery import PathFinder
from pathlib import Path
from types import ModuleType


def resolve_callable(spec: str) -> Callable:
    """Return the callable ``function`` of ``spec``; a clear ValueError otherwise.

    ``path/to/file.py:function`` loads that file (relative to the current directory) as a
    module. ``module:function`` imports ``module`` the way ``python -m`` would: from the
    current directory first, then from ``sys.path``. ``sys.path`` is never changed."""
    target, sep, fn_name = spec.rpartition(":")  # rpartition: Windows paths hold a ':'
    if not sep or not target or not fn_name:
        raise ValueError(f"'{spec}' is not module:function or path/to/file.py:function")
    if target.endswith(".py") or "/" in target or os.sep in target:
        mod = _load_file(Path(target), spec)
    else:
        mod = _import(target, spec)
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise ValueError(f"'{spec}': module '{target}' has no callable '{fn_name}'")
    return fn


_STABLE: dict[str, str] = {}  # module name of a loaded file -> its stable name


def stable_module_name(name: str) -> str:
    """The name to record for module ``name`` (e.g. in a recipe's architecture): for a file
    loaded by `resolve_callable`, its path from the current directory as Python would import
    it (``models/net.py`` -> ``models.net``; a file outside it: its stem), the same wherever the
    project lies; any other module keeps its own name."""
    return _STABLE.get(name, name)


def _stable_name(path: Path) -> str:
    try:
        rel = path.relative_to(Path.cwd().resolve()).with_suffix("")
    except ValueError:
        return path.stem
    return ".".join(rel.parts) if all(p.isidentifier() for p in rel.parts) else path.stem


def _load_file(path: Path, spec: str) -> ModuleType:
    if not path.is_file():
        raise ValueError(f"'{spec}': no file {path} (paths are relative to {Path.cwd()})")
    path = path.resolve()
    # one module per file, under a name no real module has: loading it twice is one import;
    # what is recorded of its classes is its stable name (`stable_module_name`)
    name = f"trainonce_user_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
    if name in sys.modules:
        return sys.modules[name]
    mspec = importlib.util.spec_from_file_location(name, path)
    if mspec is None or mspec.loader is None:
        raise ValueError(f"'{spec}': {path} cannot be loaded as a Python module")
    _STABLE[name] = _stable_name(path)
    return _exec(importlib.util.module_from_spec(mspec), name, spec)


def _import(mod_name: str, spec: str) -> ModuleType:
    top = mod_name.partition(".")[0]
    # `python -m` semantics: a module or regular package in the current directory comes first;
    # a plain folder there (a namespace package) only when no installed package has the name
    local = None if top in sys.modules else PathFinder.find_spec(top, [os.getcwd()])
    namespace = local is not None and local.origin is None
    if local is not None and not namespace:
        _exec(importlib.util.module_from_spec(local), top, spec)
    try:
        return importlib.import_module(mod_name)
    except ImportError as exc:
        error = exc
    if namespace and top not in sys.modules:
        _exec(importlib.util.module_from_spec(local), top, spec)
        try:
            return importlib.import_module(mod_name)
        except ImportError as exc:
            del sys.modules[top]
            error = exc
    raise ValueError(
        f"cannot import module '{mod_name}' of '{spec}': {error} (modules are looked up in "
        f"the current directory {Path.cwd()} and on sys.path; a file can be named as "
        "path/to/file.py:function)") from error


def _exec(mod: ModuleType, name: str, spec: str) -> ModuleType:
    sys.modules[name] = mod  # registered first, as import does: dataclasses and pickle need it
    try:
        if mod.__spec__.loader is not None:
            mod.__spec__.loader.exec_module(mod)
    except Exception as exc:
        del sys.modules[name]
        raise ValueError(f"'{spec}': importing {mod.__spec__.origin} failed: "
                         f"{type(exc).__name__}: {exc}") from exc
    return mod
