"""ultralytics integration: `TrainOnceDetectionTrainer` is ultralytics' own `DetectionTrainer`
with a trainonce optimizer sized by its real step count; the slim YOLO is written at the end."""

from __future__ import annotations

import os
import warnings
from copy import deepcopy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.optional import install_hint
from ..optim.registry import optimizer_class
from . import Pruning, PruningView

try:
    from ultralytics.models.yolo.detect import DetectionTrainer
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils import DEFAULT_CFG
    from ultralytics.utils.torch_utils import EarlyStopping, ModelEMA, unwrap_model
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("trainonce.integrations.ultralytics needs ultralytics: "
                      + install_hint("yolo")) from exc

# ultralytics' `optimizer=` names -> the trainonce variant; "auto" (ultralytics picks by run
# length) keeps the variant of the optimizer's kwargs (default sgd) at the trainer's lr0
VARIANTS = {"auto": None, "sgd": "sgd", "adam": "adam", "adamw": "adamw"}


class YoloPruning(PruningView):
    """The pruning recipe of a YOLO run: the trainonce ``optimizer`` (a name of
    `trainonce.optim.OPTIMIZERS`) and its kwargs (``target_flops=0.5``, ...; ``lr``,
    ``weight_decay`` and the variant default to the trainer's ``lr0``, its scaled
    ``weight_decay`` and ``optimizer=``). ``example_inputs`` default to one zero image at the
    trainer's ``imgsz``. Pass `trainer` to ultralytics: ``YOLO(cfg).train(trainer=p.trainer,
    ...)``; afterwards ``p.slim`` is the slim model (ultralytics' own type) and ``p.slim_path``
    its ultralytics checkpoint (``<save_dir>/weights/slim.pt``; `trainonce.save` writes
    ``slim_dir``, default ``<save_dir>/slim``)."""

    def __init__(self, optimizer: str = "hesso", *, example_inputs: Any = None,
                 slim_dir: str | os.PathLike | None = None, **optimizer_kwargs: Any) -> None:
        optimizer_class(optimizer)  # an unknown name fails here, not after the data is loaded
        if "total_steps" in optimizer_kwargs:
            raise ValueError("total_steps comes from the trainer (epochs x batches, with its "
                             "gradient accumulation); leave it out")
        if "momentum" in optimizer_kwargs:
            raise ValueError("ultralytics' warm-up ramps the optimizer's momentum to the "
                             "trainer's momentum=: set it there, not here")
        self.pruning = Pruning(example_inputs, optimizer, slim_dir, optimizer_kwargs)
        self.slim_path: Path | None = None

    def trainer(self, cfg: Any = DEFAULT_CFG, overrides: dict | None = None,
                _callbacks: dict | None = None) -> TrainOnceDetectionTrainer:
        """What ``Model.train(trainer=...)`` calls: a trainer that prunes with this recipe."""
        return TrainOnceDetectionTrainer(cfg, overrides, _callbacks, trainonce=self)


class _MirrorEMA(ModelEMA):
    """An "EMA" that is an exact copy of the model after every step. A weight average would
    un-zero the groups (the mean of a zeroed and a live weight is not zero), and ultralytics
    validates and saves the EMA: its mAP and best.pt/last.pt would not be the model trainonce
    slims."""

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        if self.enabled:
            self.updates += 1
            for e, m in zip(self.ema.state_dict().values(),
                            unwrap_model(model).state_dict().values(), strict=True):
                e.copy_(m)


def optimizer_steps(batches: int, epochs: int, warmup: int, accumulate: int) -> int:
    """The optimizer steps `BaseTrainer._do_train` takes: one every ``accumulate`` batches,
    ``accumulate`` ramping up from 1 over the ``warmup`` iterations (its own interpolation).
    ultralytics' ``iterations`` argument of `build_optimizer` is not this count."""
    steps, last, acc = 0, -1, accumulate
    for ni in range(batches * epochs):
        if warmup and ni <= warmup:
            acc = max(1, int(np.interp(ni, [0, warmup], [1, accumulate]).round()))
        if ni - last >= acc:
            steps, last = steps + 1, ni
    return steps


class TrainOnceDetectionTrainer(DetectionTrainer, PruningView):
    """ultralytics' `DetectionTrainer` whose optimizer is the trainonce optimizer of
    ``trainonce`` (a `YoloPruning`). What changes and why:

    - `build_optimizer` analyses the model (`trainonce.analyze` leaves it as it was, the
      Detect head's cached anchors included) and sizes the optimizer by `optimizer_steps`.
      Its one param group has no ``param_group`` key, so the warm-up treats it as a weight
      group: lr ramps from 0 to ``lr0`` (not the bias lr), momentum from ``warmup_momentum``
      to ``momentum``; ultralytics' LR schedule then drives its lr, as for its own optimizers.
      Gradient clipping and the GradScaler act on the gradients before our step, as usual.
    - the EMA is an exact copy of the model (`_MirrorEMA`), early stopping is off (stopping
      early would end before the pruning schedule does) and best.pt is always the last epoch
      (an earlier, better-scoring epoch is not yet pruned to the target).
    - when training ends the slim model is built from the trained model, saved with
      `trainonce.save` and as an ultralytics checkpoint (``weights/slim.pt``)."""

    def __init__(self, cfg: Any = DEFAULT_CFG, overrides: dict | None = None,
                 _callbacks: dict | None = None, *, trainonce: YoloPruning) -> None:
        super().__init__(cfg, overrides, _callbacks)
        self.trainonce = trainonce
        self.pruning = trainonce.pruning
        _refuse_unsupported(self)

    def build_optimizer(self, model: nn.Module, name: str = "auto", lr: float = 0.001,
                        momentum: float = 0.9, decay: float = 1e-5,
                        iterations: float = 1e5) -> torch.optim.Optimizer:
        key = str(name).lower()
        if key not in VARIANTS:
            raise ValueError(f"optimizer={name!r}: with trainonce, ultralytics' optimizer names "
                             f"the variant, one of {', '.join(VARIANTS)} (the pruning optimizer "
                             "is YoloPruning's)")
        defaults: dict[str, Any] = dict(lr=lr, momentum=momentum, weight_decay=decay)
        given = self.pruning.optimizer_kwargs.get("variant")
        if VARIANTS[key] is not None:
            if given not in (None, VARIANTS[key]):
                raise ValueError(f"optimizer={name!r} and variant={given!r} disagree")
            defaults["variant"] = VARIANTS[key]
        net = unwrap_model(model)
        if self.pruning.example_inputs is None:
            device = next(net.parameters()).device
            self.pruning.example_inputs = torch.zeros(1, self.data["channels"], self.args.imgsz,
                                                      self.args.imgsz, device=device)
        nb = len(self.train_loader)
        steps = optimizer_steps(nb, self.epochs, self._get_warmup_iterations(nb), self.accumulate)
        if steps < 3:  # the schedule's minimum: warm-up, pruning, training on
            raise ValueError(f"ultralytics takes {steps} optimizer steps here ({nb} batches x "
                             f"{self.epochs} epochs, a step every {self.accumulate} batches: "
                             "nbs / batch); trainonce needs at least 3: more epochs or images, "
                             "or a smaller nbs")
        return self.pruning.build(net, steps, **defaults)

    def run_callbacks(self, event: str) -> None:
        # the trainer's own hooks, not add_callback: YOLO.train hands the trainer the model's
        # callback dict, and callbacks added there would outlive this run
        if event == "on_pretrain_routine_end":
            if self.optimizer is not self.pruning.opt:
                raise RuntimeError("the trainer's optimizer is not the trainonce optimizer")
            self.ema = _MirrorEMA(self.model)
            self.stopper = EarlyStopping(patience=0)  # 0: never stops
        elif event == "on_train_epoch_end":
            self.best_fitness = None  # validate() then makes this epoch the best one
        elif event == "on_train_end":
            self._write_slim()
        super().run_callbacks(event)

    def _write_slim(self) -> None:
        from ultralytics import __version__

        opt = self.pruning.opt
        if opt.steps_taken < opt.schedule.total:  # e.g. AMP's GradScaler skipped steps
            warnings.warn(f"trainonce: the optimizer took {opt.steps_taken} of its "
                          f"{opt.schedule.total} steps; its last pruning periods may not have "
                          "zeroed their groups (see metrics())", stacklevel=2)
        slim = self.pruning.finish(unwrap_model(self.model), self.save_dir / "slim")
        # YOLOv8 and YOLO11 slim to their own class (graph.families); a model whose forward
        # cannot follow the cut is a traced program, which ultralytics cannot load
        if isinstance(slim, DetectionModel):
            self.wdir.mkdir(parents=True, exist_ok=True)
            path = self.wdir / "slim.pt"
            # the layout of ultralytics' own checkpoints, so YOLO(path) predicts, validates
            # and exports it; fp16 like theirs (YOLO(path) loads it back as fp32)
            torch.save({"model": deepcopy(slim).half(), "train_args": vars(self.args),
                        "version": __version__, "epoch": -1}, path)
            self.trainonce.slim_path = path


def _refuse_unsupported(trainer: TrainOnceDetectionTrainer) -> None:
    """Set-ups in which the optimizer's step count, or the model it prunes, would be wrong."""
    args = trainer.args
    if args.task != "detect":
        raise ValueError(f"task={args.task!r}: TrainOnceDetectionTrainer trains detection "
                         "models only (ultralytics' DetectionTrainer)")
    for bad, why in ((args.time, "time= re-plans the epochs during training"),
                     (args.resume, "resuming is not supported yet"),
                     (trainer.world_size > 1, "multi-GPU runs start a fresh trainer "
                      "per process without the pruning recipe"),
                     (args.compile, "compile= wraps the model the optimizer was built on"),
                     (getattr(args, "quantize", None), "quantize= rebuilds the model"),
                     (getattr(args, "distill_model", None), "distill_model= wraps the model")):
        if bad:
            raise ValueError(f"TrainOnceDetectionTrainer: {why}; train without it")
