"""What ``trainonce run`` records for its report besides the model: the command line, whether
a dense baseline is trained, the pruning phase, training times, the dense baseline itself.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass


@dataclass
class RunFacts:
    """The pruning phase (first pruning step, step after the last), the dense baseline
    (`cli.baseline.Baseline` or None), seconds spent training in this process, the step this
    process resumed at, the command line(s)."""

    phases: tuple[int, int] | None = None
    baseline: object | None = None
    train_seconds: float = 0.0
    resumed_at: int = 0
    command: str = ""


def command_line(args: argparse.Namespace) -> str:
    """The options as given (after parsing), as a command line that repeats them."""
    words = ["trainonce", "run"]
    for k, v in vars(args).items():
        if k in ("func", "command", "debug") or v is None or (v is False and k != "dense_baseline"):
            continue
        flag = "--" + k.replace("_", "-")
        if k == "dense_baseline":
            words.append(flag if v else "--no-dense-baseline")
        else:
            words += [flag] if v is True else [flag, str(v)]
    return shlex.join(words)


def record_start(cfg, args: argparse.Namespace) -> None:
    """Note the command line in ``cfg.extra`` (saved in config.json) and decide the dense
    baseline: as given, else as recorded on --resume, else on for the built-in model only."""
    key = "resumed_with" if args.resume is not None else "command"
    cfg.extra[key] = command_line(args)
    if args.dense_baseline is not None:
        cfg.extra["dense_baseline"] = args.dense_baseline
    elif args.resume is None:
        cfg.extra["dense_baseline"] = args.model is None


def run_facts(cfg, opt, state: dict | None, seconds: float) -> RunFacts:
    """The facts once the pruning run is trained (the baseline is added after)."""
    sched = getattr(opt, "schedule", None)  # every trainonce optimizer has one
    cmd, again = cfg.extra.get("command", ""), cfg.extra.get("resumed_with")
    command = f"{cmd}\n(resumed with: {again})" if cmd and again else cmd or again or ""
    return RunFacts(
        phases=(sched.start, sched.end) if sched is not None else None,
        train_seconds=seconds,
        resumed_at=state["step"] if state else 0,
        command=command,
    )
