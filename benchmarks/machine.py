"""This machine's torchvision quirk for benchmark scripts (see tests/conftest.py and
shared ENVIRONMENT.md): the registry's CUDA torchvision needs its two op schemas defined before
`import torchvision` works on CPU torch. Import this module first; it changes nothing elsewhere."""

import torch

try:
    torch.ops.torchvision.nms  # noqa: B018
except (AttributeError, RuntimeError):
    _SCHEMAS = torch.library.Library("torchvision", "DEF")
    _SCHEMAS.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _SCHEMAS.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
