"""Prune YOLOv8n while ultralytics' own trainer trains it: ``YoloPruning`` hands ultralytics a
``DetectionTrainer`` whose optimizer is HESSO at 50% FLOPs; the slim model, ultralytics' own
type, is written as an ultralytics checkpoint that ``YOLO(path)`` validates and predicts with.

Run from a checkout: ``python examples/yolo.py [--smoke]`` (``--smoke``: 2 epochs on 16 images,
seconds). Needs the ``yolo`` extra. The data are shapes on noise that the script writes, in
YOLO format, to a temporary directory (nothing is downloaded; so is the run's output).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

from trainonce.data.yolo_shapes import write_shapes_dataset
from trainonce.zoo import import_torchvision


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="2 epochs on 16 images")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # ultralytics reads these when imported: no settings file in $HOME, no downloads
        os.environ.setdefault("YOLO_CONFIG_DIR", str(root / "config"))
        os.environ.setdefault("YOLO_OFFLINE", "1")
        try:  # ultralytics' validator imports torchvision; this also loads a CUDA-only build
            import_torchvision()
        except ImportError:
            pass  # no torchvision: ultralytics does without it
        from ultralytics import YOLO

        from trainonce.integrations.ultralytics import YoloPruning

        n, epochs = (16, 2) if args.smoke else (320, 30)
        data = write_shapes_dataset(root / "data", n_train=n, n_val=max(8, n // 4), size=64)
        pruning = YoloPruning("hesso", target_flops=0.5)
        # nbs=batch: a step per batch (ultralytics' nbs=64 accumulates 8 batches a step)
        model = YOLO("yolov8n.yaml")  # from its yaml: random weights, nothing downloaded
        model.train(trainer=pruning.trainer, data=str(data), epochs=epochs, imgsz=64, batch=8,
                    nbs=8, optimizer="SGD", workers=0, device="cpu", amp=False, plots=False,
                    project=str(root), name="run", verbose=False)
        m = pruning.pruning.opt.metrics()
        print(f"HESSO kept {m['flops_kept']:.2f} of the FLOPs, {m['params_kept']:.2f} of the "
              f"params ({m['num_redundant']} groups zeroed)")
        slim = YOLO(str(pruning.slim_path))  # weights/slim.pt: ultralytics' DetectionModel
        metrics = slim.val(data=str(data), imgsz=64, batch=8, workers=0, device="cpu",
                           plots=False, project=str(root), name="val", verbose=False)
        found = slim.predict(torch.rand(1, 3, 64, 64), imgsz=64, device="cpu", verbose=False)
        print(f"slim {type(slim.model).__name__}: mAP50 {metrics.box.map50:.3f} on the "
              f"synthetic val set, {len(found[0].boxes)} boxes on a noise image")


if __name__ == "__main__":
    main()
