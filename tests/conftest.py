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

# `make test` runs two xdist workers on this 2-core machine: one thread each, or they fight
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

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


# The slow tier, by whole file: model zoos, training to an accuracy, end-to-end CLI runs and
# multi-process runs. `make test-fast` (-m "not slow") leaves them out of the edit loop; single
# slow tests elsewhere carry @pytest.mark.slow themselves. `make test` runs everything.
SLOW_FILES = {
    "test_zoo_torchvision.py", "test_zoo_timm.py", "test_zoo_yolo.py", "test_zoo_hf.py",
    "test_erasing_mnist.py",
    "test_meta_llama.py", "cli/test_resume.py", "cli/test_run.py", "cli/test_run_erase.py",
    "cli/test_user_specs.py", "cli/test_zoo_data.py", "optim/test_digits.py",
    "optim/test_ato_digits.py", "optim/test_ddp.py", "optim/test_fsdp2.py",
    "optim/test_erase_optimizers.py",
    "integrations/test_lightning.py", "integrations/test_transformers_trainer.py",
    "integrations/test_ultralytics_trainer.py",
}
_TESTS = os.path.dirname(os.path.abspath(__file__))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if os.path.relpath(str(item.path), _TESTS) in SLOW_FILES:
            item.add_marker(pytest.mark.slow)
