"""Zoo equivalence on torchvision models: slim == zeroed full model to fp32 precision."""

import pytest
import torch
from equivalence import check_slim, make_zeroing_visible

torchvision = pytest.importorskip("torchvision")

# input sizes: as small as each architecture allows, to keep the suite fast
ZOO = {
    "alexnet": 64, "vgg16_bn": 32, "resnet18": 32, "resnet50": 32, "resnext50_32x4d": 32,
    "wide_resnet50_2": 32, "densenet121": 32, "googlenet": 32, "inception_v3": 80,
    "mobilenet_v2": 32, "mobilenet_v3_large": 32, "mnasnet0_5": 32, "shufflenet_v2_x0_5": 32,
    "squeezenet1_0": 48, "efficientnet_b0": 32, "efficientnet_v2_s": 32, "regnet_x_400mf": 32,
    "regnet_y_400mf": 32, "convnext_tiny": 32, "vit_b_16": 32, "swin_t": 56, "swin_v2_t": 56,
    "maxvit_t": 224,
}
KWARGS = {
    "googlenet": {"aux_logits": False, "init_weights": False},
    "inception_v3": {"aux_logits": False, "init_weights": False},
    "vit_b_16": {"image_size": 32},
}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_torchvision_slim_matches(name):
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None, **KWARGS.get(name, {}))
    size = ZOO[name]
    inputs = torch.randn(2, 3, size, size)
    make_zeroing_visible(model, inputs)
    space, _ = check_slim(model, inputs)
    assert space.prunable_flops_fraction() > 0.5, space.summary()
