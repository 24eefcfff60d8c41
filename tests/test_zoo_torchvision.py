"""Zoo equivalence on torchvision models: slim == zeroed full model to fp32 precision, and
the search space each model has (its group counts), so that a rule gone missing fails here."""

import pytest
from equivalence import check_slim, group_counts

pytest.importorskip("torchvision")

# name: input size, as small as each architecture allows (maxvit_t: 7x7 partitions at 1/32)
ZOO = {
    "alexnet": 64, "vgg16_bn": 32, "resnet18": 32, "resnet50": 32, "resnext50_32x4d": 32,
    "wide_resnet50_2": 32, "densenet121": 32, "googlenet": 32, "inception_v3": 80,
    "mobilenet_v2": 32, "mobilenet_v3_large": 32, "mnasnet0_5": 32, "shufflenet_v2_x0_5": 32,
    "squeezenet1_0": 48, "efficientnet_b0": 32, "efficientnet_v2_s": 32, "regnet_x_400mf": 32,
    "regnet_y_400mf": 32, "convnext_tiny": 32, "vit_b_16": 32, "swin_t": 56, "swin_v2_t": 56,
    "maxvit_t": 224,
}
# (groups, prunable groups, prunable ZIGs), recorded when every model's rules were complete:
# an op that loses its rule makes its channels unprunable, and these move
GROUPS = {
    "alexnet": (19, 7, 9344), "convnext_tiny": (145, 18, 26496),
    "densenet121": (240, 120, 10240), "efficientnet_b0": (76, 40, 11404),
    "efficientnet_v2_s": (159, 75, 38784), "googlenet": (99, 57, 7280),
    "inception_v3": (170, 94, 17216), "maxvit_t": (258, 69, 33736),
    "mnasnet0_5": (63, 25, 5744), "mobilenet_v2": (63, 25, 9128),
    "mobilenet_v3_large": (64, 30, 8696), "regnet_x_400mf": (97, 27, 1068),
    "regnet_y_400mf": (89, 37, 2323), "resnet18": (48, 12, 2880),
    "resnet50": (73, 37, 11456), "resnext50_32x4d": (73, 21, 4416),
    "shufflenet_v2_x0_5": (63, 21, 1928), "squeezenet1_0": (45, 25, 2976),
    "swin_t": (134, 24, 17802), "swin_v2_t": (166, 48, 23970),
    "vgg16_bn": (43, 15, 12416), "vit_b_16": (105, 24, 37008),
    "wide_resnet50_2": (73, 37, 19008),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ZOO))
def test_torchvision_slim_matches(name, analysed):
    model, inputs, space = analysed(name, ZOO[name])
    assert group_counts(space) == GROUPS[name], space.summary()
    # one draw per model: the zoo as a whole covers both sparsities and many seeds
    index = sorted(ZOO).index(name)
    check_slim(model, inputs, sparsities=((0.3, 0.7)[index % 2],), seeds=(index,), space=space)
