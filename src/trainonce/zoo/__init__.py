"""Model names the CLI understands: built-in models, torchvision / timm names, ``module:factory``.

`build_model` always builds from scratch (no pretrained weights: nothing is downloaded).
"""

from __future__ import annotations

import importlib
import inspect
import sys
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..data.optional import install_hint, require
from ..spec import resolve_callable
from .resnet import ResNet8

BUILTIN = {"resnet8": "small ResNet-style CNN (3 residual stages, widths 16/32/64)"}


@dataclass
class BuiltModel:
    model: nn.Module
    in_channels: int  # channels the model's input must have
    default_input_shape: tuple[int, ...]
    source: str  # "builtin", "torchvision", "timm" or "factory"


def import_torchvision():
    """Import torchvision, or raise ImportError naming the extra."""
    try:
        import torchvision
    except RuntimeError as exc:
        # Some torchvision wheels are CUDA builds whose C ops cannot load with a CPU-only torch;
        # `import torchvision` then fails with "operator torchvision::nms does not exist". The
        # model builders do not need those detection ops, so we declare the two op schemas the
        # Python side registers fake kernels for, and import again. Only for that exact error.
        if "torchvision::nms does not exist" not in str(exc):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import_torchvision._lib = lib  # keep the library (and its definitions) alive
        import torchvision
    except ImportError as exc:
        require("torchvision", "torchvision model names", extra="vision")
        raise exc
    _nms_fallback(torchvision)
    return torchvision


def _nms_fallback(torchvision) -> None:
    """Without its C ops (the CUDA build above), torchvision.ops.nms raises; ultralytics'
    validation and predict call it once torchvision is imported. Only then it becomes the
    plain-torch `greedy_nms`."""
    box = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    try:
        torchvision.ops.nms(box, torch.ones(1), 0.5)
    except RuntimeError:  # "Couldn't load custom C++ ops"
        torchvision.ops.nms = greedy_nms


def greedy_nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """torchvision.ops.nms in plain torch (indices kept, by decreasing score), for a torchvision
    whose C ops did not load (see `import_torchvision`)."""
    order = scores.argsort(descending=True)
    b = boxes[order]
    area = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt, rb = torch.max(b[:, None, :2], b[None, :, :2]), torch.min(b[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    over = (inter / (area[:, None] + area[None, :] - inter)) > iou_threshold
    alive = torch.ones(len(b), dtype=torch.bool, device=b.device)
    for i in range(len(b)):  # greedy: a kept box suppresses every later one it overlaps
        if alive[i]:
            alive[i + 1:] &= ~over[i, i + 1:]
    return order[alive]


def _torchvision_names() -> list[str]:
    try:
        return list(import_torchvision().models.list_models())
    except ImportError:
        return []


def _call_factory(fn, num_classes: int, in_channels: int) -> nn.Module:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    kwargs = {}
    for key in ("num_classes", "in_channels", "in_chans"):
        if key in params:
            kwargs[key] = num_classes if key == "num_classes" else in_channels
    model = fn(**kwargs)
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"model factory {fn.__name__} returned {type(model).__name__}, not a Module"
        )
    return model


def build_model(spec: str, num_classes: int = 10, in_channels: int = 1) -> BuiltModel:
    """Build ``spec`` from scratch for ``num_classes`` outputs and ``in_channels`` inputs."""
    if spec in BUILTIN:
        m = ResNet8(num_classes=num_classes, in_channels=in_channels)
        return BuiltModel(m, in_channels, (in_channels, 28, 28), "builtin")
    if ":" in spec and not spec.startswith("timm:"):
        m = _call_factory(resolve_callable(spec), num_classes, in_channels)
        return BuiltModel(m, in_channels, (in_channels, 224, 224), "factory")
    name = spec.removeprefix("timm:")
    if not spec.startswith("timm:") and name in _torchvision_names():
        tv = import_torchvision()
        m = tv.models.get_model(name, weights=None, num_classes=num_classes)
        return BuiltModel(m, 3, (3, 224, 224), "torchvision")
    timm = None
    try:
        import_torchvision()  # timm imports torchvision when installed
        timm = importlib.import_module("timm")
    except ImportError:
        if spec.startswith("timm:"):
            require("timm", "timm model names", extra="vision")
    if timm is not None and name in timm.list_models():
        m = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels)
        shape = tuple(m.pretrained_cfg.get("input_size", (in_channels, 224, 224)))
        return BuiltModel(m, in_channels, (in_channels, *shape[1:]), "timm")
    hint = (
        ""
        if timm is not None
        else f" (timm/torchvision not installed: {install_hint('vision')})"
    )
    raise ValueError(
        f"unknown model '{spec}': use a built-in ({', '.join(BUILTIN)}), a torchvision or timm "
        f"model name, or module:factory{hint}"
    )
