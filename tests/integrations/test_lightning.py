"""`TrainOnceCallback` for Lightning: a small CNN trained and pruned by `lightning.Trainer` on
real digits (CPU, offline); step count, logs, bit-exact resume, the slim model at the end.
The code under "docs" is the one docs/integrations.md shows."""

import csv

import pytest
import torch

pytest.importorskip("lightning")
import trainonce  # noqa: E402
from trainonce.data import load_data  # noqa: E402


def net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10))


def fit(root, ckpt_path=None):
    # --- docs: lightning ---
    import lightning as L
    from torch.nn import functional as F
    from torch.utils.data import DataLoader, TensorDataset

    from trainonce.integrations.lightning import TrainOnceCallback, trainonce_optimizer

    class Classifier(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = net()

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self.model(x), y)

        def configure_optimizers(self):
            return trainonce_optimizer(self)  # sized by trainer.estimated_stepping_batches

    x, y = load_data("digits").train.tensors  # sorted by class: shuffle once, the same each run
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train = TensorDataset(x[order], y[order])
    callback = TrainOnceCallback(torch.randn(1, 1, 8, 8), optimizer="hesso", lr=0.05,
                                 target_flops=0.5)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", default_root_dir=root,
                        callbacks=[callback, L.pytorch.callbacks.ModelCheckpoint(
                            dirpath=root / "ckpt", save_top_k=-1, every_n_epochs=1)],
                        logger=L.pytorch.loggers.CSVLogger(root), log_every_n_steps=5,
                        enable_progress_bar=False, enable_model_summary=False)
    module = Classifier()
    trainer.fit(module, DataLoader(train, batch_size=64), ckpt_path=ckpt_path)
    slim = callback.slim  # also saved in root/slim (trainonce.save)
    # --- end docs ---
    return trainer, module, callback, slim


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    root = tmp_path_factory.mktemp("lightning")
    return root, *fit(root)


def test_optimizer_sized_by_estimated_stepping_batches(whole):
    _, trainer, _, callback, _ = whole
    assert trainer.optimizers == [callback.pruning.opt]
    assert callback.pruning.opt.schedule.total == trainer.estimated_stepping_batches == 46


def test_metrics_logged(whole):
    root, trainer, _, _, _ = whole
    with open(root / "lightning_logs" / "version_0" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("trainonce/flops_kept")]
    assert len(rows) == 46 // 5
    assert float(rows[0]["trainonce/group_sparsity"]) == 0.0
    assert float(rows[-1]["trainonce/flops_kept"]) < 0.8


def test_slim_model_saved_and_equal(whole):
    root, _, module, _, slim = whole
    x = torch.stack([load_data("digits").test[i][0] for i in range(16)])
    model = module.model.eval()
    with torch.no_grad():
        ref = model(x)
        assert torch.allclose(slim(x), ref, atol=1e-5)
        assert torch.equal(trainonce.load(root / "slim", net).eval()(x), slim(x))
    assert sum(p.numel() for p in slim.parameters()) < sum(p.numel() for p in model.parameters())


def test_resume_is_bit_exact(whole, tmp_path):
    root, _, module, _, _ = whole
    (first,) = (root / "ckpt").glob("epoch=0-*.ckpt")
    _, again, _, _ = fit(tmp_path, ckpt_path=first)
    full = dict(module.model.named_parameters())
    for name, p in again.model.named_parameters():
        assert torch.equal(p, full[name]), name


def test_module_without_the_optimizer_is_refused(tmp_path):
    import lightning as L

    from trainonce.integrations.lightning import TrainOnceCallback

    class Plain(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = net()

        def training_step(self, batch, batch_idx):
            return self.model(batch[0]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = L.Trainer(max_steps=3, accelerator="cpu", default_root_dir=tmp_path, logger=False,
                        callbacks=[TrainOnceCallback(torch.randn(1, 1, 8, 8))],
                        enable_progress_bar=False, enable_checkpointing=False)
    data = torch.utils.data.TensorDataset(torch.randn(8, 1, 8, 8), torch.zeros(8).long())
    with pytest.raises(RuntimeError, match="trainonce_optimizer"):
        trainer.fit(Plain(), torch.utils.data.DataLoader(data, batch_size=4))


def test_slim_model_learned_the_task(whole):
    test = load_data("digits").test
    x, y = test.tensors
    with torch.no_grad():
        acc = (whole[4](x).argmax(1) == y).float().mean()
    assert acc > 0.5
