"""timm models work the first time: slim == zeroed full model (eager, sizes updated)."""

import pytest
import torch
from equivalence import check_slim, group_counts, make_zeroing_visible

timm = pytest.importorskip("timm")

MODELS = {  # name: (input size, extra kwargs)
    "resnet10t": (32, {}),
    "convnext_atto": (32, {}),
    "vit_tiny_patch16_224": (32, {"img_size": 32}),
}
# (groups, prunable groups, prunable ZIGs): a rule gone missing moves these
GROUPS = {"convnext_atto": (106, 12, 7360), "resnet10t": (34, 10, 1976),
          "vit_tiny_patch16_224": (105, 24, 9252)}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_timm_slim_matches(name):
    size, kwargs = MODELS[name]
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=10, **kwargs)
    inputs = torch.randn(2, 3, size, size)
    make_zeroing_visible(model, inputs)
    space, slim = check_slim(model, inputs, sparsities=(0.3, 0.7), seeds=(0,))
    assert group_counts(space) == GROUPS[name], space.summary()
    assert not isinstance(slim, torch.fx.GraphModule), "timm models should stay eager modules"
