"""`TrainOnceDetectionTrainer`: YOLOv8n pruned by ultralytics' own trainer on a tiny synthetic
set (offline, CPU); the step count, the zero groups, the slim model's type, outputs, val/predict.
The code under "docs" is the one docs/integrations.md shows."""

import copy
import os
import tempfile

import pytest
import torch

os.environ.setdefault("YOLO_OFFLINE", "1")  # ultralytics reads both when it is imported
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-config-"))
pytest.importorskip("ultralytics")
from ultralytics import YOLO  # noqa: E402
from ultralytics.nn.tasks import DetectionModel  # noqa: E402

import trainonce  # noqa: E402
from trainonce.data.yolo_shapes import write_shapes_dataset  # noqa: E402
from trainonce.integrations.ultralytics import (  # noqa: E402
    TrainOnceDetectionTrainer,
    YoloPruning,
    optimizer_steps,
)
from trainonce.zoo import import_torchvision  # noqa: E402

import_torchvision()  # ultralytics' validator imports torchvision (a CUDA build here: see zoo)


def train(data, out):
    # --- docs: ultralytics ---
    from ultralytics import YOLO

    from trainonce.integrations.ultralytics import YoloPruning

    pruning = YoloPruning("hesso", target_flops=0.5)
    model = YOLO("yolov8n.yaml")  # built from its yaml: no weights are downloaded
    model.train(trainer=pruning.trainer, data=str(data), epochs=2, imgsz=64, batch=4, nbs=8,
                warmup_epochs=1, workers=0, device="cpu", amp=False, plots=False,
                project=str(out), name="run", seed=0, deterministic=True)
    slim = pruning.slim  # ultralytics' DetectionModel; YOLO(pruning.slim_path) loads it
    # --- end docs ---
    return pruning, model.trainer, slim


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("yolo")
    data = write_shapes_dataset(root / "data", n_train=16, n_val=8, size=64)
    return data, root, *train(data, root)


def test_the_optimizer_steps_the_trainers_count_and_reaches_the_target(run):
    _, _, pruning, trainer, _ = run
    opt = pruning.pruning.opt
    assert trainer.optimizer is opt
    # 16 images / batch 4, 2 epochs, accumulate 2 ramped up over the 4 warm-up batches
    assert optimizer_steps(4, 2, 4, 2) == opt.schedule.total == opt.steps_taken == 5
    m = opt.metrics()
    assert m["num_redundant"] > 0 and m["group_sparsity"] > 0
    assert abs(m["flops_kept"] - 0.5) < 0.02
    # the EMA ultralytics validated and saved is the trained model itself, zeros included
    for e, w in zip(trainer.ema.ema.state_dict().values(), trainer.model.state_dict().values()):
        assert torch.equal(e.float(), w.float())
    # best.pt is the last epoch, the pruned one (fp16, its EMA moved to "model" when stripped)
    best = torch.load(trainer.best, weights_only=False)["model"].state_dict().values()
    for b, w in zip(best, trainer.model.state_dict().values()):
        assert torch.equal(b, w.to(b.dtype))


def test_slim_is_an_ultralytics_model_equal_to_the_trained_one(run):
    data, root, pruning, trainer, slim = run
    trained = trainer.model.eval()
    assert isinstance(slim, DetectionModel)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(slim) < 0.9 * count(trained)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    dense = copy.deepcopy(trained)  # the zero groups given values again
    with torch.no_grad():
        for p in dense.parameters():
            p[p == 0] = torch.randn(int((p == 0).sum()), generator=torch.Generator()) * 0.1
        want, got, moved = trained(x)[0], slim(x)[0], dense(x)[0]
    tol = 1e-5 * want.abs().max()
    assert (moved - want).abs().max() > 100 * tol  # the removed groups did matter
    assert torch.allclose(got, want, rtol=0, atol=tol)
    # plain ultralytics classes: the C2f halves were cut alike (one ZIG per channel pair)
    assert all(type(m).__module__.startswith(("ultralytics.", "torch.")) for m in slim.modules())
    back = trainonce.load(root / "run" / "slim",
                          lambda: DetectionModel("yolov8n.yaml", nc=3, verbose=False))
    with torch.no_grad():
        assert torch.allclose(back(x)[0], want, rtol=0, atol=tol)


def test_ultralytics_val_and_predict_run_on_the_slim_checkpoint(run):
    data, root, pruning, _, _ = run
    yolo = YOLO(str(pruning.slim_path))
    assert isinstance(yolo.model, DetectionModel)
    metrics = yolo.val(data=str(data), imgsz=64, batch=8, workers=0, device="cpu",
                       plots=False, project=str(root), name="val")
    assert 0.0 <= metrics.box.map50 <= 1.0
    results = yolo.predict(torch.rand(1, 3, 64, 64), imgsz=64, device="cpu", verbose=False)
    assert len(results) == 1 and results[0].boxes.data.shape[1] == 6
    # ultralytics' export runs C2f's forward_split, which reads the stored width self.c
    exported = yolo.export(format="torchscript", imgsz=64, device="cpu")
    assert os.path.getsize(exported) > 0


def test_misuse_is_refused_with_a_reason(tmp_path):
    with pytest.raises(ValueError, match="unknown optimizer"):
        YoloPruning("sgd")
    with pytest.raises(ValueError, match="total_steps"):
        YoloPruning(total_steps=10, target_flops=0.5)
    with pytest.raises(ValueError, match="momentum"):
        YoloPruning(momentum=0.8, target_flops=0.5)
    data = write_shapes_dataset(tmp_path / "data", 2, 2)
    with pytest.raises(ValueError, match="detection models only"):
        TrainOnceDetectionTrainer(overrides={"model": "yolov8n-seg.yaml", "task": "segment",
                                             "data": str(data)}, trainonce=YoloPruning())
    with pytest.raises(ValueError, match="time="):
        TrainOnceDetectionTrainer(overrides={"model": "yolov8n.yaml", "data": str(data),
                                             "time": 0.1}, trainonce=YoloPruning())
    with pytest.raises(ValueError, match="optimizer='RMSprop'"):
        YOLO("yolov8n.yaml").train(trainer=YoloPruning(target_flops=0.5).trainer,
                                   data=str(data), epochs=1, imgsz=64, batch=2, workers=0,
                                   optimizer="RMSprop", device="cpu", amp=False, plots=False,
                                   project=str(tmp_path), name="bad")


def test_greedy_nms_keeps_what_ultralytics_torch_nms_keeps():
    from ultralytics.utils.nms import TorchNMS

    from trainonce.zoo import greedy_nms

    g = torch.Generator().manual_seed(0)
    xy = torch.rand(200, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(200, 2, generator=g) * 20], 1)
    scores = torch.rand(200, generator=g)
    for iou in (0.3, 0.5, 0.7):
        assert torch.equal(greedy_nms(boxes, scores, iou), TorchNMS.nms(boxes, scores, iou))
