"""A CNN: torchvision's resnet18 trained from scratch on the bundled digits while HESSO prunes it
to half its FLOPs, then cut to a slim model that computes the same outputs, saved and reloaded.

Run from a checkout: ``python examples/cnn_resnet18.py`` (a few minutes on CPU) or with
``--smoke`` (a few steps on a slice, seconds). Needs the ``vision`` and ``data`` extras.
"""

from __future__ import annotations

import argparse
import tempfile

import torch
import torch.nn.functional as F

import trainonce
from trainonce.data import load_data
from trainonce.testing import fit, minibatches_per_epoch
from trainonce.zoo import import_torchvision


def rgb(x: torch.Tensor, size: int) -> torch.Tensor:
    """8x8 grey digits as the 3-channel images resnet18 expects, ``size`` pixels a side."""
    return F.interpolate(x, size=size, mode="bilinear").repeat(1, 3, 1, 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few steps on 64 images")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    data = load_data("digits")  # 1,797 real 8x8 digits shipped with scikit-learn
    (x, y), (xt, yt) = data.train.tensors, data.test.tensors
    if args.smoke:
        x, y, xt, yt = x[:64], y[:64], xt[:64], yt[:64]
    size = 16 if args.smoke else 32
    x, xt = rgb(x, size), rgb(xt, size)

    def build() -> torch.nn.Module:
        return import_torchvision().models.resnet18(num_classes=10)

    model = build()
    dense_params = sum(p.numel() for p in model.parameters())
    space = trainonce.analyze(model, (x[:2],))  # zero-invariant groups, found automatically
    print(space.summary(max_rows=5))
    epochs, batch = (3, 32) if args.smoke else (8, 64)
    opt = trainonce.HESSO(space, lr=0.05, weight_decay=1e-4, target_flops=0.5,
                          total_steps=epochs * minibatches_per_epoch(len(y), batch))
    fit(model, opt, x, y, epochs, batch_size=batch)  # your usual loop: zero_grad/backward/step
    print(opt.metrics())

    slim = trainonce.construct_subnet(model, space)  # raises if outputs differ
    with torch.no_grad():
        dense_acc = (model(xt).argmax(1) == yt).float().mean().item()
        slim_acc = (slim(xt).argmax(1) == yt).float().mean().item()
    params = sum(p.numel() for p in slim.parameters()) / dense_params
    print(f"test accuracy dense {dense_acc:.3f} / slim {slim_acc:.3f}; params kept {params:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        trainonce.save(slim, tmp)  # safetensors + JSON recipe, no pickled modules
        back = trainonce.load(tmp, build).eval()
        with torch.no_grad():
            assert torch.allclose(back(xt), slim(xt), atol=1e-5)
    print("slim model saved and reloaded: same outputs")


if __name__ == "__main__":
    main()
