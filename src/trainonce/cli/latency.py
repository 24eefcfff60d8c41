"""``run``'s latency target: its flags, their check, and the table measured at the start of a
run and kept in the run directory (so that a resumed run selects with the same table)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .setup import LATENCY_NAME, RunConfig, check_device

FLAGS = ("latency_device", "latency_batch", "latency_threads")


def add_latency_arguments(p: argparse.ArgumentParser, d: RunConfig) -> None:
    p.add_argument("--latency-device",
                   help="with --target-latency: the device its table is measured on (default: "
                   "--device); the run's latency.json keeps it for --resume")
    p.add_argument("--latency-batch", type=int,
                   help="with --target-latency: batch size of the table "
                   f"(default {d.latency_batch})")
    p.add_argument("--latency-threads", type=int,
                   help=f"with --target-latency: CPU threads of the table (default "
                   f"{d.latency_threads})")


def check_latency_arguments(args: argparse.Namespace, kind: str) -> None:
    """The latency flags only go with --target-latency; the device must exist here."""
    given = [n for n in FLAGS if getattr(args, n) is not None]
    if args.latency_device is not None:
        check_device(args.latency_device)
    if given and kind != "latency":
        flags = ", ".join("--" + n.replace("_", "-") for n in given)
        raise ValueError(f"{flags} describe the latency table of --target-latency; give "
                         "--target-latency R or leave them out")


def latency_table(cfg: RunConfig, space, run_dir: Path):
    """A latency target's table: the run's own ``latency.json`` when resuming, else measured
    now (`save_latency_table` keeps it once the run directory exists)."""
    from ..latency import LatencyTable, measure_latency

    path = run_dir / LATENCY_NAME
    if path.is_file():
        return LatencyTable.load(path).bind(space)
    device = cfg.latency_device or cfg.device
    print(f"measuring the latency table of {cfg.model} on {device}, batch {cfg.latency_batch}, "
          f"{cfg.latency_threads} thread(s) ...", flush=True)
    return measure_latency(space, device=device, batch_size=cfg.latency_batch,
                           threads=cfg.latency_threads, progress=True)


def save_latency_table(table, run_dir: Path) -> None:
    if table is not None and not (run_dir / LATENCY_NAME).is_file():
        table.save(run_dir / LATENCY_NAME)
