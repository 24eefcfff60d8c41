"""``trainonce analyze MODEL``: print the search-space summary and draw the dependency graph.

The graph is a self-contained HTML page (or a bare SVG with ``--graph x.svg``); no network use.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .console import quiet_torch


def add_parser(sub) -> None:
    p = sub.add_parser(
        "analyze",
        help="show a model's prunable groups and dependency graph",
        description=__doc__.splitlines()[0].replace("``", ""),
    )
    p.add_argument(
        "model",
        metavar="MODEL",
        help="resnet8 (built-in), a torchvision/timm name, or module:factory",
    )
    p.add_argument(
        "--input-shape",
        metavar="C,H,W",
        help="input shape without batch (default: the model's usual input)",
    )
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument(
        "--mode",
        choices=["prune", "erase", "both"],
        default="prune",
        help="channel groups (prune), whole removable structures (erase), or both",
    )
    p.add_argument(
        "--graph", metavar="FILE", help="graph file, .html or .svg (default <model>-graph.html)"
    )
    p.add_argument("--max-rows", type=int, default=40, help="groups listed in the summary")
    p.set_defaults(func=run_analyze)


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"--input-shape must look like 3,224,224 (C,H,W), got '{text}'")
    return shape


def run_analyze(args: argparse.Namespace) -> int:
    import trainonce

    from ..report.graph import write_graph
    from ..zoo import BUILTIN, build_model

    shape = _shape(args.input_shape) if args.input_shape else None
    channels = shape[0] if shape else (1 if args.model in BUILTIN else 3)
    built = build_model(args.model, args.num_classes, channels)
    source = ("from --input-shape" if shape
              else "the model's default; set another with --input-shape C,H,W")
    shape = shape or built.default_input_shape
    graph = Path(args.graph or f"{args.model.replace(':', '_').replace('/', '_')}-graph.html")
    if graph.suffix.lower() not in (".html", ".htm", ".svg"):
        raise ValueError(f"--graph must end in .html or .svg, got '{graph}'")
    if not graph.parent.is_dir():
        raise ValueError(f"cannot write {graph}: directory {graph.parent} does not exist")
    model = built.model.eval()
    example = (torch.randn(1, *shape),)
    # the shape fixes what the analysis sees (strides, sizes), so the user is told which one
    print(f"input shape: {'x'.join(map(str, example[0].shape))} (batch 1; {source})", flush=True)
    with quiet_torch():
        space = trainonce.analyze(model, example, mode=args.mode)
    print(space.summary(max_rows=args.max_rows))
    with quiet_torch():
        write_graph(space, model, example, graph)
    print(f"\ndependency graph: {graph}")
    return 0
