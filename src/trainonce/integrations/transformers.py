"""Hugging Face `Trainer` integration: `TrainOnceTrainer` makes the Trainer's optimizer a
trainonce optimizer sized by the Trainer's own step count; `TrainOnceCallback` logs and slims."""

from __future__ import annotations

import os
from typing import Any

from ..data.optional import install_hint
from . import Pruning, PruningView

try:
    from transformers import Trainer, TrainerCallback
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("trainonce.integrations.transformers needs transformers and accelerate: "
                      + install_hint("hf")) from exc


class TrainOnceCallback(TrainerCallback, PruningView):
    """Holds the pruning recipe; at the end of training writes the slim model to ``slim_dir``
    (default ``<output_dir>/slim``, via `trainonce.save`) and keeps it as ``self.slim``.

    ``optimizer_kwargs`` go to the optimizer (``target_flops=0.5``, ``variant="adamw"``, ...);
    ``lr`` and ``weight_decay`` default to the Trainer's ``learning_rate`` and ``weight_decay``;
    ``total_steps`` is the Trainer's step count."""

    def __init__(self, example_inputs: Any, optimizer: str = "hesso",
                 slim_dir: str | os.PathLike | None = None, **optimizer_kwargs: Any) -> None:
        if "total_steps" in optimizer_kwargs:
            raise ValueError("total_steps comes from the Trainer (max_steps or epochs); "
                             "leave it out")
        self.pruning = Pruning(example_inputs, optimizer, slim_dir, optimizer_kwargs)

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        if self.pruning.opt is None or _unwrap(optimizer) is not self.pruning.opt:
            raise RuntimeError("TrainOnceCallback needs the Trainer to use its optimizer: "
                               "train with trainonce.integrations.transformers.TrainOnceTrainer")

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero:
            self.pruning.finish(model, os.path.join(args.output_dir, "slim"))


class TrainOnceTrainer(Trainer):
    """A `transformers.Trainer` whose optimizer is the trainonce optimizer of ``trainonce``
    (a `TrainOnceCallback`, added to the callbacks), built when training starts from the
    Trainer's step count; the Trainer's own LR schedule then drives its ``lr``. Logs carry
    ``trainonce/group_sparsity``, ``trainonce/flops_kept`` and ``trainonce/params_kept`` (and
    ``trainonce/latency_kept`` under a latency target)."""

    def __init__(self, *args: Any, trainonce: TrainOnceCallback, **kwargs: Any) -> None:
        opts = kwargs.get("optimizers", (None, None))
        if opts[0] is not None:
            raise ValueError("TrainOnceTrainer makes its own optimizer: leave optimizers out")
        super().__init__(*args, **kwargs)
        self.trainonce = trainonce
        if trainonce not in self.callback_handler.callbacks:
            self.add_callback(trainonce)
        self._trainonce_steps = 0

    def create_optimizer_and_scheduler(self, num_training_steps: int) -> None:
        self._trainonce_steps = num_training_steps  # transformers 4.x passes the count here
        super().create_optimizer_and_scheduler(num_training_steps)

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            # transformers 5 sets state.max_steps before creating the optimizer
            steps = self._trainonce_steps or self.state.max_steps
            net = self.model if model is None else model
            self.optimizer = self.trainonce.pruning.build(
                net, steps, lr=self.args.learning_rate, weight_decay=self.args.weight_decay)
        return self.optimizer

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        # added before Trainer.log hands the dict to every logger (report_to) in turn
        if self.trainonce.pruning.opt is not None and "loss" in logs:
            logs.update(self.trainonce.pruning.metrics())
        super().log(logs, *args, **kwargs)


def _unwrap(optimizer):
    """The optimizer inside accelerate's `AcceleratedOptimizer` wrapper."""
    return getattr(optimizer, "optimizer", optimizer)
