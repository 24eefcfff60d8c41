"""Export a (slim) model to ONNX, a ``torch.export`` program or plain safetensors weights.

Each file is written with `trainonce.atomic.atomic_write`, reloaded and checked against torch.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import nn

from .atomic import atomic_write
from .data.optional import require
from .pristine import pristine
from .subnet.verify import max_rel_diff
from .trace import tensor_leaves

FORMATS = {"onnx": "model.onnx", "torch-export": "model.pt2", "safetensors": "model.safetensors"}


class ExportMismatch(RuntimeError):
    pass


def _check(name: str, ref, got, atol: float) -> float:
    """Max |ref - got| over every output tensor (tuples, lists and dicts flattened in order: a
    YOLO head returns several); see `_check_tensor`."""
    refs, gots = tensor_leaves(ref), tensor_leaves(got)
    if len(refs) != len(gots):
        raise ExportMismatch(f"{name} returns {len(gots)} output tensors, torch {len(refs)}")
    return max(_check_tensor(name, r, g, atol) for r, g in zip(refs, gots))


def _check_tensor(name: str, ref: torch.Tensor, got: torch.Tensor, atol: float) -> float:
    """Max |ref - got|; refused beyond ``atol * max(1, max|ref|)`` or on a NaN mismatch (the
    relative rule of `trainonce.subnet.verify`, with a floor of 1 for tiny outputs)."""
    ref, got = ref.float(), torch.as_tensor(got).float()
    rel = max_rel_diff(ref, got)  # inf for shape or NaN/inf mismatches
    scale = float(ref[torch.isfinite(ref)].abs().max()) if ref.numel() else 0.0
    diff = rel * max(scale, 1e-12) if rel != float("inf") else float("inf")
    if not diff <= atol * max(1.0, scale):
        raise ExportMismatch(f"{name} output differs from torch by {diff:.3g} (tolerance {atol})")
    return diff


def _onnx_write(model: nn.Module, example: torch.Tensor, tmp: str, big: bool) -> torch.Tensor:
    """Export to ``tmp``, the batch dim dynamic when the model allows; return the check input."""
    kw = dict(dynamo=True, external_data=big, verbose=False, input_names=["input"])
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # each try on a pristine model: a failed dynamic trace leaves what the forward cached
        # (YOLO-pose's anchors) holding symbolic sizes, and the static export then fails too
        try:
            batch = torch.export.Dim("batch", min=1)
            with pristine(model):
                torch.onnx.export(model, (example,), tmp, dynamic_shapes=({0: batch},), **kw)
            return torch.cat([example, example.flip(0) * 0.5], 0)
        except Exception:  # noqa: BLE001 - models that specialise the batch: static export
            with pristine(model):
                torch.onnx.export(model, (example,), tmp, **kw)
            return example


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path, atol: float = 1e-4) -> float:
    """Write ``path`` (.onnx); run it in onnxruntime and return max |onnx - torch|."""
    require("onnx", "ONNX export")
    require("onnxscript", "ONNX export")
    ort = require("onnxruntime", "checking the ONNX export")
    model, example = model.eval().cpu(), example.cpu()
    big = sum(p.numel() * p.element_size() for p in model.parameters()) > 1.5 * 2**30
    diff: list[float] = []

    def write(tmp: str) -> None:
        check_x = _onnx_write(model, example, tmp, big)
        with torch.no_grad():
            ref = model(check_x)
        sess = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
        got = sess.run(None, {sess.get_inputs()[0].name: check_x.numpy()})
        diff.append(_check("ONNX (onnxruntime)", ref, [torch.from_numpy(g) for g in got], atol))

    atomic_write(path, write)
    return diff[0]


def export_torch(model: nn.Module, example: torch.Tensor, path: Path, atol: float = 1e-5) -> float:
    """Write a ``torch.export`` program (.pt2); reload it and return max |reloaded - eager|."""
    model, example = model.eval().cpu(), example.cpu()
    diff: list[float] = []

    def write(tmp: str) -> None:
        with torch.no_grad():
            torch.export.save(torch.export.export(model, (example,), strict=False), tmp)
            got = torch.export.load(tmp).module()(example)
            diff.append(_check("torch.export", model(example), got, atol))

    atomic_write(path, write)
    return diff[0]


@torch.no_grad()
def _blank_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose saved tensors (its state dict) are NaN or 0: it works again
    only if the file restores every one of them. Non-persistent buffers are kept, as a model
    factory would rebuild them."""
    blank = copy.deepcopy(model)
    for t in blank.state_dict().values():
        t.fill_(float("nan")) if t.is_floating_point() else t.zero_()
    return blank


def export_safetensors(
    model: nn.Module, example: torch.Tensor, path: Path, atol: float = 1e-6
) -> float:
    """Write the weights (state dict, buffers included) as one safetensors file; load them into
    a blanked copy of ``model`` and return max |reloaded - original| on ``example``."""
    st = require("safetensors.torch", "safetensors export")
    model, example = model.eval().cpu(), example.cpu()
    diff: list[float] = []

    def write(tmp: str) -> None:
        st.save_model(model, tmp)
        reloaded = _blank_copy(model)
        st.load_model(reloaded, tmp, strict=True)
        with torch.no_grad():
            diff.append(_check("safetensors (reloaded)", model(example), reloaded(example), atol))

    atomic_write(path, write)
    return diff[0]


def export(model: nn.Module, example: torch.Tensor, fmt: str, out_dir: Path) -> tuple[Path, float]:
    """Export in ``fmt`` (a key of FORMATS) under ``out_dir``; return (path, max abs diff)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format '{fmt}': use one of {', '.join(FORMATS)}")
    path = Path(out_dir) / FORMATS[fmt]
    write = {"onnx": export_onnx, "torch-export": export_torch, "safetensors": export_safetensors}
    return path, write[fmt](model, example, path)
