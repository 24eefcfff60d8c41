"""Facts a report records about where it was made: file sizes and software versions.

Plain ``{label: text}`` dicts, shown in the report's "Run" table and kept in ``summary.json``.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

import torch

# (label, path relative to the run directory); a staged entry replaces the run directory's one
FILES = (
    ("slim model (slim/: safetensors + recipe)", "slim"),
    ("ONNX export (model.onnx)", "model.onnx"),
    ("dense model + optimizer state (checkpoint.pt)", "checkpoint.pt"),
    ("dense baseline (dense-baseline/checkpoint.pt)", "dense-baseline/checkpoint.pt"),
)


def human_bytes(n: int) -> str:
    for unit, div in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"


def size_of(path: Path) -> int:
    """Bytes of a file, or of every file under a directory."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def file_sizes(run_dir: Path, staging: Path | None = None) -> dict[str, str]:
    """Sizes of the run's files that exist (looked up in ``staging`` first)."""
    out = {}
    for label, rel in FILES:
        for base in (staging, run_dir):
            if base is not None and (base / rel).exists():
                out[label] = human_bytes(size_of(base / rel))
                break
    return out


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str]:
    """Python, torch, trainonce (and onnxruntime, which checked the ONNX file), and the machine."""
    from .. import __version__

    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "trainonce": __version__,
    }
    ort = _version("onnxruntime")
    if ort:
        out["onnxruntime"] = ort
    out["machine"] = f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"
    return out
