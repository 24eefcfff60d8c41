"""Resumable checkpoints: state dicts of model, optimizer and LR scheduler, RNG states, step and
history. Written with `trainonce.atomic.atomic_write`; loaded with ``weights_only=True``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write

CKPT_NAME = "checkpoint.pt"
_KEYS = {"model", "optimizer", "scheduler", "step", "history", "rng"}


class CheckpointError(ValueError):
    pass


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    state["python_pos"] = random.getstate()[2]
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    run_dir: Path, model, optimizer, scheduler, step: int, history: list[dict]
) -> Path:
    path = run_dir / CKPT_NAME
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": int(step),
        "history": history,
        "rng": rng_state(),
    }
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    return path


def load_checkpoint(run_dir: Path) -> dict[str, Any]:
    """Load and sanity-check a checkpoint; any problem raises CheckpointError (one line)."""
    path = run_dir / CKPT_NAME
    if not path.is_file():
        raise CheckpointError(f"no checkpoint to resume from: {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt file
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"corrupt checkpoint {path}: {msg}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"corrupt checkpoint {path}: not a dict")
    if _KEYS - {"scheduler"} <= set(state) and "scheduler" not in state:
        raise CheckpointError(
            f"checkpoint {path} was written by an older trainonce without the LR scheduler "
            "state, so it cannot be resumed exactly; start the run again"
        )
    if not _KEYS <= set(state):
        raise CheckpointError(f"corrupt checkpoint {path}: missing {sorted(_KEYS - set(state))}")
    return state


def restore(state: dict[str, Any], model, optimizer, scheduler, path: Path) -> None:
    """Load the saved states; the scheduler after the optimizer, whose LR it continues."""
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
    except Exception as exc:  # noqa: BLE001
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"checkpoint {path} does not fit this run: {msg}") from exc
