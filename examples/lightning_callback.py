"""The PyTorch Lightning integration: ``TrainOnceCallback`` prunes a small CNN that a
``lightning.Trainer`` trains on the bundled digits; ``trainonce_optimizer`` sizes the optimizer
by ``trainer.estimated_stepping_batches``, and the slim model is saved at the end of fit.

Run from a checkout: ``python examples/lightning_callback.py [--smoke]`` (``--smoke``: a few
steps, seconds). Needs the ``lightning`` and ``data`` extras.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import trainonce
from trainonce.data import load_data
from trainonce.zoo import import_torchvision

try:  # lightning imports torchvision when installed; this also loads a CUDA-only build
    import_torchvision()
except ImportError:
    pass  # no torchvision: lightning does without it
import lightning as L  # noqa: E402

from trainonce.integrations.lightning import TrainOnceCallback, trainonce_optimizer  # noqa: E402


def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10))


class Classifier(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.model = net()  # the callback prunes this attribute (model_attr="model")

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.model(x), y)

    def configure_optimizers(self):
        return trainonce_optimizer(self)  # sized by trainer.estimated_stepping_batches


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few steps")
    args = parser.parse_args(argv)
    data = load_data("digits")
    x, y = data.train.tensors  # sorted by class: shuffle once
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train = DataLoader(TensorDataset(x[order], y[order]), batch_size=64)
    callback = TrainOnceCallback(torch.randn(1, 1, 8, 8), optimizer="hesso", lr=0.05,
                                 target_flops=0.5)
    with tempfile.TemporaryDirectory() as root:
        trainer = L.Trainer(max_epochs=1 if args.smoke else 10,
                            limit_train_batches=6 if args.smoke else None,
                            accelerator="cpu", default_root_dir=root, callbacks=[callback],
                            logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(Classifier(), train)
        back = trainonce.load(Path(root) / "slim", net).eval()  # saved at the end of fit
    xt, yt = data.test.tensors
    with torch.no_grad():
        assert torch.allclose(back(xt), callback.slim(xt), atol=1e-5)
        acc = (back(xt).argmax(1) == yt).float().mean()
    print(f"slim CNN saved by the callback: test accuracy {acc:.3f} (chance 0.10)")


if __name__ == "__main__":
    main()
