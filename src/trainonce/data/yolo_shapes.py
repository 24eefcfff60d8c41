"""A synthetic detection set in YOLO format (filled shapes on noise, a data yaml) for the
ultralytics integration's tests, example and benchmark: no download, deterministic per seed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .optional import require

CLASSES = ("square", "disc", "triangle")


def _draw(rng: np.random.Generator, size: int, max_shapes: int):
    # Pillow comes with ultralytics (the yolo extra)
    Image = require("PIL.Image", "write_shapes_dataset", extra="yolo")
    ImageDraw = require("PIL.ImageDraw", "write_shapes_dataset", extra="yolo")

    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)  # noise, not a flat colour
    img = Image.fromarray(pixels)
    draw, labels = ImageDraw.Draw(img), []
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        cls = int(rng.integers(len(CLASSES)))
        w = h = int(rng.integers(size // 5, size // 2))
        x0, y0 = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        box = (x0, y0, x0 + w, y0 + h)
        if cls == 0:
            draw.rectangle(box, fill=colour)
        elif cls == 1:
            draw.ellipse(box, fill=colour)
        else:
            draw.polygon([(x0, y0 + h), (x0 + w, y0 + h), (x0 + w // 2, y0)], fill=colour)
        labels.append(f"{cls} {(x0 + w / 2) / size:.6f} {(y0 + h / 2) / size:.6f} "
                      f"{w / size:.6f} {h / size:.6f}")
    return img, labels


def write_shapes_dataset(root: str | os.PathLike, n_train: int = 16, n_val: int = 8, *,
                         size: int = 64, max_shapes: int = 3, seed: int = 0) -> Path:
    """Write ``n_train`` / ``n_val`` images of ``size`` px with up to ``max_shapes`` shapes each
    (``images/{train,val}``, ``labels/{train,val}``) under ``root``; returns the data yaml."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img, labels = _draw(rng, size, max_shapes)
            img.save(root / "images" / split / f"{i:05d}.png")
            (root / "labels" / split / f"{i:05d}.txt").write_text("\n".join(labels) + "\n")
    names = "\n".join(f"  {i}: {name}" for i, name in enumerate(CLASSES))
    yaml = root / "data.yaml"
    yaml.write_text(f"path: {root.resolve()}\ntrain: images/train\nval: images/val\n"
                    f"names:\n{names}\n")
    return yaml
