"""CLI test set-up: the torchvision import workaround for this machine, and library stand-ins
while the real analyze / optimizers / construct_subnet / save are not merged yet."""

import torch

try:
    torch.ops.torchvision.nms  # noqa: B018 - raises when the op is missing
except (AttributeError, RuntimeError):
    _lib = torch.library.Library("torchvision", "DEF")
    _lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import standin  # noqa: E402

standin.install()
