"""Export a (slim) model to ONNX, a ``torch.export`` program or plain safetensors weights.

Each export is written to a temp file and renamed into place, and is checked against torch.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from .data.optional import require

FORMATS = {"onnx": "model.onnx", "torch-export": "model.pt2", "safetensors": "model.safetensors"}


class ExportMismatch(RuntimeError):
    pass


def _tmp_beside(path: Path) -> str:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.tmp-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    return tmp


def _finish(tmp: str, path: Path, ok: bool) -> None:
    if ok:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    elif os.path.exists(tmp):
        os.unlink(tmp)


def _check(name: str, ref: torch.Tensor, got: torch.Tensor, atol: float) -> float:
    diff = float((ref.float() - torch.as_tensor(got).float()).abs().max())
    scale = float(ref.abs().max()) or 1.0
    if diff > atol * max(1.0, scale):
        raise ExportMismatch(f"{name} output differs from torch by {diff:.3g} (tolerance {atol})")
    return diff


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path, atol: float = 1e-4) -> float:
    """Write ``path`` (.onnx, batch dim dynamic when possible); return max |onnx - torch|."""
    require("onnx", "ONNX export")
    require("onnxscript", "ONNX export")
    ort = require("onnxruntime", "checking the ONNX export")
    model = model.eval().cpu()
    example = example.cpu()
    big = sum(p.numel() * p.element_size() for p in model.parameters()) > 1.5 * 2**30
    tmp, ok = _tmp_beside(path), False
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            kw = dict(dynamo=True, external_data=big, verbose=False, input_names=["input"])
            try:
                batch = torch.export.Dim("batch", min=1)
                torch.onnx.export(model, (example,), tmp, dynamic_shapes=({0: batch},), **kw)
                check_x = torch.cat([example, example.flip(0) * 0.5], 0)
            except Exception:  # noqa: BLE001 - models that specialise the batch: static export
                torch.onnx.export(model, (example,), tmp, **kw)
                check_x = example
            ref = model(check_x)
        sess = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
        got = sess.run(None, {sess.get_inputs()[0].name: check_x.numpy()})[0]
        diff = _check("ONNX (onnxruntime)", ref, torch.from_numpy(got), atol)
        ok = True
    finally:
        _finish(tmp, path, ok)
    return diff


def export_torch(model: nn.Module, example: torch.Tensor, path: Path, atol: float = 1e-5) -> float:
    """Write a ``torch.export`` program (.pt2); reload it and return max |reloaded - eager|."""
    model = model.eval().cpu()
    tmp, ok = _tmp_beside(path), False
    try:
        with torch.no_grad():
            ep = torch.export.export(model, (example.cpu(),), strict=False)
            torch.export.save(ep, tmp)
            got = torch.export.load(tmp).module()(example.cpu())
            diff = _check("torch.export", model(example.cpu()), got, atol)
        ok = True
    finally:
        _finish(tmp, path, ok)
    return diff


def export_safetensors(model: nn.Module, path: Path) -> float:
    """Write the model's weights (state dict, buffers included) as one safetensors file."""
    st = require("safetensors.torch", "safetensors export")
    tmp, ok = _tmp_beside(path), False
    try:
        st.save_model(model.cpu(), tmp)
        ok = True
    finally:
        _finish(tmp, path, ok)
    return 0.0


def export(model: nn.Module, example: torch.Tensor, fmt: str, out_dir: Path) -> tuple[Path, float]:
    """Export in ``fmt`` (a key of FORMATS) under ``out_dir``; return (path, max abs diff)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format '{fmt}': use one of {', '.join(FORMATS)}")
    path = Path(out_dir) / FORMATS[fmt]
    if fmt == "onnx":
        return path, export_onnx(model, example, path)
    if fmt == "torch-export":
        return path, export_torch(model, example, path)
    return path, export_safetensors(model, path)
