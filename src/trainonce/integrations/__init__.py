"""Callbacks for the training loops users already run (Hugging Face `Trainer`, Lightning);
each lives in its own module so that importing one never imports the other framework."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

# latency_kept: only under a latency target (it needs the run's latency table)
LOGGED = ("group_sparsity", "flops_kept", "params_kept", "latency_kept")


@dataclass
class Pruning:
    """What both integrations share: the recipe of the optimizer, the space and optimizer
    built once the loop knows its step count, and the slim model written at the end."""

    example_inputs: Any
    optimizer: str = "hesso"
    slim_dir: str | os.PathLike | None = None
    optimizer_kwargs: dict[str, Any] = field(default_factory=dict)
    space: Any = None
    opt: Any = None
    slim: nn.Module | None = None

    def build(self, model: nn.Module, total_steps: int, **defaults: Any):
        """Analyze ``model`` and make the optimizer for ``total_steps`` optimizer steps;
        ``defaults`` (the loop's own lr, weight decay) apply where the user gave none."""
        import trainonce
        from trainonce.optim.registry import optimizer_class

        if total_steps < 1:
            raise ValueError(f"the training loop reports {total_steps} optimizer steps; "
                             "trainonce needs a known, positive step count (set max_steps)")
        kwargs = {**defaults, **self.optimizer_kwargs}
        self.space = trainonce.analyze(model, self.example_inputs)
        self.opt = optimizer_class(self.optimizer)(self.space, total_steps=total_steps, **kwargs)
        return self.opt

    def metrics(self) -> dict[str, float]:
        m = self.opt.metrics()
        return {f"trainonce/{k}": float(m[k]) for k in LOGGED if k in m}

    def finish(self, model: nn.Module, default_dir: str | os.PathLike) -> nn.Module:
        """Slim ``model`` (a copy: the trained model is left as it is, modes included) and
        save it."""
        import trainonce
        from trainonce.pristine import pristine

        with pristine(model):
            model.eval()
            self.slim = trainonce.construct_subnet(model, self.space).eval()
        trainonce.save(self.slim, Path(self.slim_dir or default_dir))
        return self.slim


class PruningView:
    """What both callbacks show of their `Pruning` (``self.pruning``): the search space and,
    once training ended, the slim model."""

    pruning: Pruning

    @property
    def space(self):
        return self.pruning.space

    @property
    def slim(self) -> nn.Module | None:
        return self.pruning.slim
