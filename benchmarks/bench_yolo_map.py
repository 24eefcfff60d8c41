"""mAP50 of YOLOv8n trained dense vs pruned to 50% FLOPs by ultralytics' own trainer.

The benchmark writes a synthetic YOLO-format set (shapes on noise, `write_shapes_dataset`,
the same for every seed); per seed, ultralytics' `DetectionTrainer` trains YOLOv8n from its
yaml and `TrainOnceDetectionTrainer` trains it with HESSO at target_flops=0.5, same epochs,
data, optimizer (SGD, lr0) and seed. Both final models (dense: ultralytics' last.pt, its EMA;
pruned: weights/slim.pt) are validated by ultralytics on the val set. 1 torch thread.
Usage: python benchmarks/bench_yolo_map.py [--seeds 3] [--epochs 20] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import machine  # noqa: F401  (this machine's torchvision quirk, before ultralytics)
import torch

from trainonce.data.yolo_shapes import write_shapes_dataset
from trainonce.zoo import import_torchvision

HERE = Path(__file__).resolve().parent


def one(root: Path, data: Path, seed: int, args, prune: bool) -> dict:
    from ultralytics import YOLO
    from ultralytics.utils.torch_utils import get_flops

    from trainonce.integrations.ultralytics import YoloPruning

    pruning = YoloPruning("hesso", target_flops=0.5) if prune else None
    model = YOLO("yolov8n.yaml")
    t = time.perf_counter()
    model.train(trainer=pruning.trainer if prune else None, data=str(data), epochs=args.epochs,
                imgsz=args.imgsz, batch=args.batch, nbs=args.batch, optimizer="SGD", seed=seed,
                deterministic=True, val=False, workers=0, device="cpu", amp=False,
                plots=False, project=str(root), name=f"{'p' if prune else 'd'}{seed}",
                verbose=False)
    seconds = time.perf_counter() - t
    weights = pruning.slim_path if prune else model.trainer.last
    final = YOLO(str(weights))
    m = final.val(data=str(data), imgsz=args.imgsz, batch=32, workers=0, device="cpu",
                  plots=False, project=str(root), name=f"v{'p' if prune else 'd'}{seed}",
                  verbose=False)
    net = final.model
    out = {"map50": float(m.box.map50), "params": sum(p.numel() for p in net.parameters()),
           "gflops": get_flops(net, args.imgsz), "seconds": seconds}
    if prune:
        k = pruning.pruning.opt.metrics()
        out.update(flops_kept=float(k["flops_kept"]), params_kept=float(k["params_kept"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--train", type=int, default=256, help="training images")
    ap.add_argument("--val", type=int, default=64, help="validation images")
    ap.add_argument("--imgsz", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--smoke", action="store_true", help="1 seed, 2 epochs, 32 images")
    ap.add_argument("--out", default=str(HERE / "results" / "yolo_map_e20.md"))
    args = ap.parse_args()
    if args.smoke:
        args.seeds, args.epochs, args.train, args.val = 1, 2, 32, 16
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(tmp) / "config"))
        os.environ.setdefault("YOLO_OFFLINE", "1")
        import_torchvision()  # ultralytics' validator imports it (a CUDA build here)
        data = write_shapes_dataset(Path(tmp) / "data", args.train, args.val, size=args.imgsz)
        rows = []
        for seed in range(args.seeds):
            dense = one(Path(tmp), data, seed, args, prune=False)
            slim = one(Path(tmp), data, seed, args, prune=True)
            rows.append((dense, slim))
            print(f"seed {seed}: dense {dense} | slim {slim}", flush=True)

    def stat(values):
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.3f} ± {spread:.3f}"

    d, s = [r[0] for r in rows], [r[1] for r in rows]
    lines = [f"# YOLOv8n mAP50, dense vs pruned to 50% FLOPs by ultralytics' trainer "
             f"({args.train} train / {args.val} val synthetic images at {args.imgsz} px, "
             f"{args.epochs} epochs, {args.seeds} seeds)", "",
             "Command: `python benchmarks/bench_yolo_map.py " + " ".join(sys.argv[1:]) + "`", "",
             "| model | mAP50 (mean ± std over seeds) | params | GFLOPs at imgsz (ultralytics) |",
             "|---|---|---|---|",
             f"| dense (last.pt) | {stat([r['map50'] for r in d])} | {d[0]['params']:,} | "
             f"{d[0]['gflops']:.3f} |",
             f"| HESSO, target_flops=0.5 (slim.pt) | {stat([r['map50'] for r in s])} | "
             f"{statistics.mean(r['params'] for r in s):,.0f} (mean) | "
             f"{stat([r['gflops'] for r in s])} |", "",
             f"Slim / dense: FLOPs {stat([b['gflops'] / a['gflops'] for a, b in rows])} "
             f"(ultralytics' count), {stat([r['flops_kept'] for r in s])} (trainonce's); "
             f"params {stat([b['params'] / a['params'] for a, b in rows])}.",
             "", "Per seed (dense / slim mAP50): " + "; ".join(
                 f"seed {i}: {a['map50']:.3f} / {b['map50']:.3f}" for i, (a, b) in
                 enumerate(rows)),
             f"Training wall time per run: dense {stat([r['seconds'] for r in d])} s, pruned "
             f"{stat([r['seconds'] for r in s])} s (a shared 2-core machine: indicative only)."]
    if not args.smoke:
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
