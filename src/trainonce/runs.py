"""`load_run`: the slim model of a finished ``trainonce run`` directory in one call, rebuilt
from its recorded configuration (user code only when the caller names or trusts it)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from torch import nn


def load_run(run_dir: str | os.PathLike, model_factory: Callable[[], nn.Module] | None = None,
             *, trust_run_config: bool = False) -> nn.Module:
    """The slim model saved by ``trainonce run`` in ``run_dir`` (weights and recipe in
    ``run_dir/slim``), in eval mode like every trainonce loader (`trainonce.load`,
    `trainonce.hf.from_pretrained`); call ``.train()`` to train it further.

    Built-in models and torchvision / timm names are rebuilt from the run's ``config.json``.
    A user ``module:function`` model is code named only by that file, so it is called only
    when ``trust_run_config=True``; otherwise pass ``model_factory`` (a callable building the
    full model the run trained, with the same number of classes and input channels), as
    ``trainonce export`` asks for ``--model`` or ``--trust-run-config``.
    """
    from .cli.run import runs_user_code
    from .cli.setup import load_config
    from .io import load
    from .zoo import build_model

    run_dir = Path(run_dir)
    cfg, info = load_config(run_dir)
    if not (run_dir / "slim").is_dir():
        raise ValueError(f"{run_dir} has no slim model (slim/) yet: did the run finish?")
    if model_factory is None:
        if runs_user_code("model", cfg.model) and not trust_run_config:
            raise ValueError(
                f"this run's model is '{cfg.model}', code named only by {run_dir}/config.json; "
                "pass model_factory= (a callable building that model) or, if you trust the "
                "run directory, trust_run_config=True")

        def model_factory() -> nn.Module:
            return build_model(cfg.model, info["num_classes"], info["data_channels"]).model

    return load(run_dir / "slim", model_factory)  # in eval mode
