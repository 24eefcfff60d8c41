"""PyTorch Lightning integration: `TrainOnceCallback` builds the space and the optimizer from
``trainer.estimated_stepping_batches``, logs sparsity / FLOPs kept and writes the slim model."""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from ..data.optional import install_hint
from . import Pruning, PruningView

try:
    import lightning.pytorch as pl
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("trainonce.integrations.lightning needs lightning: "
                      + install_hint("lightning")) from exc


class TrainOnceCallback(pl.Callback, PruningView):
    """Prunes ``getattr(pl_module, model_attr)`` (the LightningModule itself if ``model_attr``
    is None) while Lightning trains it. The module's ``configure_optimizers`` returns
    `trainonce_optimizer(self)`; ``optimizer_kwargs`` go to that optimizer (``lr=0.05``,
    ``target_flops=0.5``, ...), its ``total_steps`` is ``trainer.estimated_stepping_batches``.
    At the end of fit the slim model is saved to ``slim_dir`` (default
    ``<default_root_dir>/slim``, via `trainonce.save`) and kept as ``self.slim``."""

    def __init__(self, example_inputs: Any, optimizer: str = "hesso", *,
                 model_attr: str | None = "model", slim_dir: str | os.PathLike | None = None,
                 **optimizer_kwargs: Any) -> None:
        if "total_steps" in optimizer_kwargs:
            raise ValueError("total_steps comes from trainer.estimated_stepping_batches; "
                             "leave it out")
        self.model_attr = model_attr
        self.pruning = Pruning(example_inputs, optimizer, slim_dir, optimizer_kwargs)

    def network(self, pl_module: pl.LightningModule) -> nn.Module:
        return pl_module if self.model_attr is None else getattr(pl_module, self.model_attr)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.pruning.opt is None or not any(o is self.pruning.opt for o in trainer.optimizers):
            raise RuntimeError("TrainOnceCallback: the module's configure_optimizers must return "
                               "trainonce.integrations.lightning.trainonce_optimizer(self)")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any,
                           **kwargs: Any) -> None:
        if trainer.global_step % max(1, trainer.log_every_n_steps) == 0:  # metrics cost a pass
            pl_module.log_dict(self.pruning.metrics(), on_step=True, on_epoch=False)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self.pruning.finish(self.network(pl_module),
                                os.path.join(trainer.default_root_dir, "slim"))


def trainonce_optimizer(pl_module: pl.LightningModule):
    """The optimizer of the trainer's `TrainOnceCallback`, made for ``pl_module``'s network and
    ``trainer.estimated_stepping_batches`` steps: return it from ``configure_optimizers``."""
    trainer = pl_module.trainer
    found = [c for c in trainer.callbacks if isinstance(c, TrainOnceCallback)]
    if len(found) != 1:
        raise ValueError(f"the Trainer holds {len(found)} TrainOnceCallback; give it exactly one "
                         "(pl.Trainer(callbacks=[TrainOnceCallback(...)]))")
    cb, steps = found[0], trainer.estimated_stepping_batches
    if steps == float("inf"):
        raise ValueError("trainer.estimated_stepping_batches is infinite: set max_steps or "
                         "max_epochs with a sized train dataloader")
    return cb.pruning.build(cb.network(pl_module), int(steps))
