"""Test set-up: strict op rules, offline Hugging Face, and this machine's torchvision quirk.

The registry here serves a CUDA build of torchvision whose C ops cannot load on CPU torch;
defining the two op schemas first lets `import torchvision` work (models do; nms does not).
This is a property of this machine's package source, so it lives here, not in the library.
"""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# a channel rule that fails with anything but RuleError is a bug: fail the test, don't pin
os.environ.setdefault("TRAINONCE_STRICT_RULES", "1")

try:
    torch.ops.torchvision.nms  # noqa: B018
except (AttributeError, RuntimeError):
    _TORCHVISION_SCHEMAS = torch.library.Library("torchvision", "DEF")
    _TORCHVISION_SCHEMAS.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _TORCHVISION_SCHEMAS.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


@pytest.fixture(scope="session")
def analysed():
    """Analysed torchvision models, traced once per session: ``analysed(name, size, mode)``
    returns ``(model, inputs, space)`` with the weights restored (see model_cache.py)."""
    from model_cache import AnalysedModels

    return AnalysedModels().get
