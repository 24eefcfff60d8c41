"""ultralytics YOLOv8 and YOLO11 (detect, segment, pose, classify; sizes n and s) from their
yaml: analysis time and groups, and a slim model with each ZIG drawn zero with probability 0.5
(no share per group, as training leaves them): verified exact, of ultralytics' own class,
exported to ONNX and run in ONNX Runtime, and run by ultralytics' own predict and torchscript
export. The suite covers the n sizes; this covers n and s.
Usage: [--sizes n,s] [--imgsz 128] [--out results/yolo_zoo.md]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import machine  # noqa: F401  (this machine's torchvision quirk)
import torch
from torch import nn

import trainonce
from trainonce.exporters import export_onnx

HERE = Path(__file__).resolve().parent
TASKS = {"": "DetectionModel", "-seg": "SegmentationModel", "-pose": "PoseModel",
         "-cls": "ClassificationModel"}


def visible(model: nn.Module, x: torch.Tensor) -> None:
    """BatchNorm affine redrawn and statistics calibrated (ultralytics inits them to 1/0), so
    that zeroing a channel moves the output and the exactness check means something."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
                m.momentum = None
        model.train()
        model(torch.randn((8, *x.shape[1:]), generator=gen))
    model.eval()


def one(cfg: str, cls_name: str, imgsz: int) -> dict:
    from ultralytics.nn import tasks

    torch.manual_seed(0)
    model = getattr(tasks, cls_name)(cfg, verbose=False)
    x = torch.randn(1, 3, imgsz, imgsz)
    start = time.perf_counter()
    space = trainonce.analyze(model, x)
    seconds = time.perf_counter() - start
    visible(model, x)
    gen = torch.Generator().manual_seed(1)
    zero = (torch.rand(space.num_zigs, generator=gen) < 0.5) & space.prunable_mask
    for g in space.groups:
        zero[g.offset] = False
    space.set_zero(zero)
    slim = trainonce.construct_subnet(model, space)  # raises if not exact
    with tempfile.TemporaryDirectory() as tmp:
        onnx_diff = export_onnx(slim, x, Path(tmp) / "slim.onnx")
        ultralytics_ok = _ultralytics_tools(slim, cls_name, imgsz, Path(tmp))
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return {"cfg": cfg, "analysis_s": seconds, "groups": len(space.groups),
            "prunable_zigs": space.num_prunable_zigs, "params": n(model), "slim": n(slim),
            "own_class": type(slim) is type(model), "onnx": onnx_diff,
            "ultralytics": ultralytics_ok}


TASK_OF = {"DetectionModel": "detect", "SegmentationModel": "segment", "PoseModel": "pose",
           "ClassificationModel": "classify"}


def _ultralytics_tools(slim: nn.Module, cls_name: str, imgsz: int, tmp: Path) -> bool:
    """ultralytics' own predict and export (torchscript; its export runs C2f's forward_split,
    which reads the stored width) on the slim model saved as an ultralytics checkpoint."""
    import copy

    from ultralytics import YOLO, __version__

    task = TASK_OF[cls_name]
    path = tmp / "slim.pt"
    torch.save({"model": copy.deepcopy(slim).half(), "train_args": {"imgsz": imgsz, "task": task},
                "version": __version__, "epoch": -1}, path)
    yolo = YOLO(str(path), task=task)
    yolo.predict(torch.rand(1, 3, imgsz, imgsz), imgsz=imgsz, device="cpu", verbose=False)
    return Path(yolo.export(format="torchscript", imgsz=imgsz, device="cpu")).stat().st_size > 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="n,s")
    ap.add_argument("--imgsz", type=int, default=128)
    ap.add_argument("--out", default=str(HERE / "results" / "yolo_zoo.md"))
    args = ap.parse_args()
    os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp())
    os.environ.setdefault("YOLO_OFFLINE", "1")
    torch.set_num_threads(1)
    from trainonce.zoo import import_torchvision

    import_torchvision()  # ultralytics' predict calls torchvision's nms
    rows = []
    for version in ("yolov8", "yolo11"):
        for size in args.sizes.split(","):
            for suffix, cls_name in TASKS.items():
                r = one(f"{version}{size}{suffix}.yaml", cls_name, args.imgsz)
                rows.append(r)
                print(r, flush=True)
    lines = [f"# ultralytics zoo: analysis and slim models ({args.imgsz}x{args.imgsz}, 1 thread, "
             f"torch {torch.__version__})", "",
             "| model | analysis s | groups | prunable ZIGs | params | slim params | "
             "own class | ONNX max abs diff | ultralytics predict + export |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['cfg']} | {r['analysis_s']:.1f} | {r['groups']} | "
                     f"{r['prunable_zigs']} | {r['params'] / 1e6:.2f}M | {r['slim'] / 1e6:.2f}M | "
                     f"{'yes' if r['own_class'] else 'no'} | {r['onnx']:.1e} | "
                     f"{'yes' if r['ultralytics'] else 'no'} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
