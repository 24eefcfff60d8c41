"""``trainonce export RUN_DIR --format onnx|safetensors|torch-export``: re-export a slim model.

The slim model is rebuilt from ``RUN_DIR/slim``; a ``module:factory`` model must be named again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..exporters import FORMATS, export


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export the slim model of a finished run",
        description=__doc__.splitlines()[0].replace("``", ""),
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--format", required=True, choices=list(FORMATS))
    p.add_argument("--out", help="directory for the file (default RUN_DIR/exports)")
    p.add_argument(
        "--model",
        help="the run's module:factory model, named again (built-in names need nothing)",
    )
    p.add_argument(
        "--trust-run-config",
        action="store_true",
        help="call the module:factory model recorded in RUN_DIR without naming it",
    )
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    import trainonce

    from .run import check_recorded
    from .setup import load_config

    run_dir = Path(args.run_dir)
    cfg, info = load_config(run_dir)
    check_recorded("model", cfg.model, args.model, args.trust_run_config)
    # check_recorded refused a recorded module:function that is neither named again nor trusted
    slim = trainonce.load_run(run_dir, trust_run_config=True)
    out = Path(args.out) if args.out else run_dir / "exports"
    out.mkdir(parents=True, exist_ok=True)
    example = torch.randn(1, *info["input_shape"])
    path, diff = export(slim, example, args.format, out)
    print(f"wrote {path} (reloaded; max |difference| to torch: {diff:.2e})")
    return 0
