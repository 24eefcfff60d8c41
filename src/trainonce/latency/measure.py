"""`measure_latency`: time every traced node whose widths a run can change, on a grid of widths,
and the dense model end to end; the result is a `LatencyTable`.

Each node runs alone (a one-node program with its size arguments rewritten for the cut, inputs
of the slim shapes); only differences to its full-width time enter a prediction, so per-call
overheads, which the slim model pays as well, cancel.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import atomic_write
from ..pristine import pristine
from ..space.search_space import SearchSpace
from ..subnet.program import reanalyze
from ..trace import batch_size as batch_of
from ..trace import map_inputs
from .calibrate import calibrate as fit_to_slim_models
from .nodes import node_spec
from .plan import plan_node
from .table import LatencyTable, Term, device_name, fingerprint, normalize_device
from .timing import ROUNDS, DenseClock, synchronizer, time_rounds, warm_allocator

LOG = logging.getLogger("trainonce.latency")
# Grid levels per coordinate (widths from one ZIG to all). With 3 or 9 levels, mobilenet_v2's
# predictions moved by no more than between two tables measured at 6 (up to 8% on this shared
# machine): finer grids buy nothing here, and 6 keep resnet50 at batch 1 well under a minute.
LEVELS = 6
CACHE_FORMAT = "trainonce-latency-cache"


def measure_latency(space: SearchSpace, *, device: str | torch.device = "cpu",
                    batch_size: int = 1, threads: int | None = None,
                    dtype: torch.dtype | None = None,
                    cache: str | os.PathLike | dict | None = None,
                    levels: int = LEVELS, calibrate: bool = True,
                    progress: bool = False) -> LatencyTable:
    """Measure how ``space.model``'s latency depends on the kept ZIGs, on ``device`` with
    ``threads`` CPU threads (default: torch's current number), at ``batch_size`` (the example
    inputs tiled along dim 0) and in ``dtype`` (default: the model's).

    ``cache``: a dict, or the path of a JSON file, of earlier node timings (keyed by op, shapes,
    dtypes, device, threads and torch version), reused and extended. ``calibrate``: fit the
    savings of nodes timed alone to two real slim models timed end to end (see
    `trainonce.latency.calibrate`). ``progress``: one line on stderr while measuring. The model
    is left as it was (its modes, weights, device)."""
    analysis = space.analysis
    if analysis is None:
        raise ValueError("measure_latency needs a SearchSpace made by trainonce.analyze")
    if bool(space.structure_mask.any()):
        raise ValueError(
            f"latency tables support channel pruning (mode='prune'); this search space "
            f"(mode={space.mode!r}) has removable structures, whose removal they do not model")
    if levels < 2:
        raise ValueError(f"levels must be at least 2, got {levels}")
    dev = normalize_device(device)
    model = space.model
    run_dtype = dtype or next(
        (p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    args, kwargs = _tiled(analysis.traced.args, analysis.traced.kwargs, batch_size)
    if args is not analysis.traced.args or kwargs is not analysis.traced.kwargs:
        analysis = reanalyze(analysis, model, (args, kwargs))  # labels at this batch size
    n_threads = int(threads or torch.get_num_threads())
    store, cache_path = _open_cache(cache)
    before, start = torch.get_num_threads(), time.perf_counter()
    torch.set_num_threads(n_threads)
    sync = synchronizer(dev)
    warm_allocator(dev)
    try:
        with _dense_model(model, dev, run_dtype) as dense_model:
            x_args, x_kwargs = map_inputs(lambda x: _to(x, dev, run_dtype), (args, kwargs))

            def forward():
                return dense_model(*x_args, **x_kwargs)

            prefix = f"torch={torch.__version__};device={device_name(dev)};threads={n_threads};"
            with torch.inference_mode():
                dense, terms, classes, counts = _measure_nodes(
                    analysis, space.num_zigs, forward, store, prefix, dev, run_dtype, levels,
                    progress)
            import trainonce

            meta = {"model": type(model).__name__, "fingerprint": fingerprint(space),
                    "num_zigs": space.num_zigs, "device": str(dev),
                    "device_name": device_name(dev), "threads": n_threads,
                    "dtype": str(run_dtype).removeprefix("torch."), "batch_size": batch_size,
                    "torch": torch.__version__, "trainonce": trainonce.__version__,
                    "levels": levels, **counts}
            table = LatencyTable(meta, dense, classes, terms)
            if calibrate:
                if progress:
                    sys.stderr.write("\rtrainonce latency: calibrating on two slim models" +
                                     " " * 20)
                table.meta.update(fit_to_slim_models(space, table, forward, x_args, x_kwargs,
                                                     dev, run_dtype, sync))
    finally:
        torch.set_num_threads(before)
    table.meta["seconds"] = seconds = time.perf_counter() - start
    if cache_path is not None:
        text = json.dumps({"format": CACHE_FORMAT, "entries": store})
        atomic_write(cache_path, lambda tmp: Path(tmp).write_text(text))
    message = (f"trainonce latency: {type(model).__name__} measured in {seconds:.1f} s "
               f"({len(terms)} nodes, {counts['timed']} widths timed, {counts['reused']} "
               f"reused); dense {dense * 1e3:.3f} ms, calibration factor {table.alpha:.3f}")
    if progress:
        sys.stderr.write("\r" + message + "\n")
    LOG.info(message)
    return table


def _measure_nodes(analysis, num_zigs: int, forward, store: dict, prefix: str,
                   dev: torch.device, dtype: torch.dtype, levels: int, progress: bool
                   ) -> tuple[float, list[Term], list[dict], dict]:
    """Time every node whose widths change, and the dense forward all along: the dense
    seconds, the terms, the classes they refer to, and how many widths were timed/reused."""
    sync, start = synchronizer(dev), time.perf_counter()
    clock = DenseClock(forward, sync)
    gen = torch.Generator().manual_seed(0)
    pending: dict = {}
    plans = []
    for node in analysis.traced.program.graph.nodes:
        spec = node_spec(analysis, node)
        plan = None if spec is None else plan_node(
            analysis, spec, num_zigs, levels, prefix, store.__contains__, pending, dev, dtype,
            gen)
        if plan is not None:
            plans.append(plan)

    def report(r: int) -> None:
        if progress:
            sys.stderr.write(f"\rtrainonce latency: {len(pending)} widths of {len(plans)} "
                             f"nodes, round {r}/{ROUNDS} ({time.perf_counter() - start:.0f} s)")

    report(0)
    times = time_rounds(list(pending.values()), sync, between=clock.tick, report=report)
    store.update(zip(pending, times))
    classes: dict[tuple, int] = {}
    terms = [plan.term(classes, store) for plan in plans]
    counts = {"timed": len(pending), "reused": sum(len(p.keys) for p in plans) - len(pending)}
    return (clock.finish(), terms, [{"zigs": list(k[0]), "weights": list(k[1])}
                                    for k in classes], counts)


def _tiled(args: tuple, kwargs: dict, batch: int) -> tuple[tuple, dict]:
    """The example inputs with their batch dim (see `trainonce.trace.batch_size`) tiled or cut
    to ``batch``; the same objects when it already is."""
    if batch < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch}")
    have = batch_of(args, kwargs)
    if have is None or have == batch:
        if have is None and batch != 1:
            raise ValueError("the example inputs have no batch dimension to tile")
        return args, kwargs

    def tile(x):
        if not (isinstance(x, torch.Tensor) and x.dim() > 0 and x.shape[0] == have):
            return x
        return x.repeat(math.ceil(batch / have), *[1] * (x.dim() - 1))[:batch]

    return map_inputs(tile, args), map_inputs(tile, kwargs)


def _to(x: Any, dev: torch.device, dtype: torch.dtype) -> Any:
    if not isinstance(x, torch.Tensor):
        return x
    return x.to(dev, dtype) if x.is_floating_point() else x.to(dev)


@contextlib.contextmanager
def _dense_model(model: nn.Module, dev: torch.device, dtype: torch.dtype) -> Iterator[nn.Module]:
    """The model in eval mode on ``dev`` in ``dtype``: itself (given back as it came, modes
    included) when it already is there, else a copy."""
    tensors = [*model.parameters(), *model.buffers()]
    if all(t.device == dev and (t.dtype == dtype or not t.is_floating_point()) for t in tensors):
        with pristine(model):
            yield model.eval()
    else:
        yield copy.deepcopy(model).to(device=dev, dtype=dtype).eval()


def _open_cache(cache: str | os.PathLike | dict | None) -> tuple[dict, Path | None]:
    if cache is None:
        return {}, None
    if isinstance(cache, dict):
        return cache, None
    path = Path(cache)
    if not path.exists():
        return {}, path
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
        raise ValueError(f"{path} is not a trainonce latency cache")
    return dict(data["entries"]), path
