"""ultralytics YOLO (v8 and 11; detect, segment, pose, classify) built from its yaml: the
analysis leaves the never-run model working, and the slim model reproduces the zeroed one."""

import copy

import pytest
import torch
from equivalence import check_slim, group_counts, make_zeroing_visible

import trainonce
from trainonce.exporters import export_onnx
from trainonce.subnet.verify import run

tasks = pytest.importorskip("ultralytics.nn.tasks")
block = pytest.importorskip("ultralytics.nn.modules.block")
pytest.importorskip("onnxruntime")

# yaml: (model class, groups, prunable groups, prunable ZIGs) at 64x64. The two halves of a
# C2f/C3k2/C2PSA hidden layer are one ZIG per channel pair (the blocks split them by one stored
# width), and YOLO11's PSA Attention is kept whole: the slim model is ultralytics' own class
YOLO = {
    "yolov8n.yaml": ("DetectionModel", 133, 48, 3984),
    "yolo11n.yaml": ("DetectionModel", 149, 56, 4744),
    "yolov8n-seg.yaml": ("SegmentationModel", 162, 57, 4368),
    "yolo11n-pose.yaml": ("PoseModel", 168, 62, 5050),
    "yolov8n-cls.yaml": ("ClassificationModel", 56, 20, 2832),
}
# drawn ZIG by ZIG, and the slim model exported to ONNX and run in ONNX Runtime (all tasks and
# the s sizes: benchmarks/bench_yolo_zoo.py)
INDEPENDENT = ("yolov8n.yaml", "yolo11n.yaml")


@pytest.mark.parametrize("cfg", sorted(YOLO))
def test_yolo_analysis_leaves_the_model_and_slims_exactly(cfg, tmp_path):
    cls_name, *counts = YOLO[cfg]
    torch.manual_seed(0)
    model = getattr(tasks, cls_name)(cfg, verbose=False)
    x = torch.randn(1, 3, 64, 64)
    reference = copy.deepcopy(model)
    # built, analysed, then trained (it never ran before): Detect caches anchors in its
    # forward while tracing, and none may stay on the model
    space = trainonce.analyze(model, x)
    assert group_counts(space) == tuple(counts), space.summary()
    for mine, ref in zip(model.modules(), reference.modules()):  # e.g. Detect.shape, anchors
        assert vars(mine).keys() == vars(ref).keys()
        for k, v in vars(ref).items():
            if isinstance(v, torch.Tensor):
                assert type(vars(mine)[k]) is type(v) and torch.equal(vars(mine)[k], v), k
            elif k == "shape" or isinstance(v, (int, float, str, type(None))):
                assert vars(mine)[k] == v, k
    probe = torch.randn(2, 3, 64, 64)
    for m in (model, reference):  # a training forward after the analysis runs (and moves
        m.train()                  # BatchNorm statistics in both alike)
        m(probe)
    got, want = run(model, (probe,), {}), run(reference, (probe,), {})
    assert all(torch.equal(a, b) for a, b in zip(got, want)) and len(got) == len(want)
    make_zeroing_visible(model, x)
    index = sorted(YOLO).index(cfg)
    _, slim = check_slim(model, x, sparsities=((0.3, 0.7)[index % 2],), seeds=(index,),
                         space=space)
    assert type(slim) is type(model)  # ultralytics' own class: its predict/val/export work
    for m in slim.modules():  # the stored widths its export's forward_split reads
        if isinstance(m, (block.C2f, block.C2PSA)):
            assert 2 * m.c == m.cv1.conv.out_channels
    if cfg not in INDEPENDENT:
        return
    # a trained model zeroes each group to its own share: ZIGs drawn one by one, not a
    # share per group, must slim to the own class too (C2f and C3k2/C2PSA: one per version)
    gen = torch.Generator().manual_seed(index)
    zero = (torch.rand(space.num_zigs, generator=gen) < 0.5) & space.prunable_mask
    for g in space.groups:  # every group keeps one ZIG
        zero[g.offset] = False
    space.set_zero(zero)
    slim = trainonce.construct_subnet(model, space)  # verified against the zeroed model
    assert type(slim) is type(model)
    # every output of the head (boxes+classes and the three raw maps), not the first alone
    assert export_onnx(slim, x, tmp_path / "slim.onnx") <= 1e-4 * 64
    assert (tmp_path / "slim.onnx").stat().st_size > 0
