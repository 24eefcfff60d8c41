"""Two gloo processes for the distributed tests: a file rendezvous, each rank's results written
whole, and a worker stuck in teardown ended instead of hanging the suite."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def init(rank: int, world: int, out: str) -> None:
    """The process group of a spawned worker. A file rendezvous: no port picked before the
    spawn that another process on a shared machine could take in between."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank,
                            world_size=world)


def save(res: dict, out: str, rank: int) -> None:
    """Rank ``rank``'s results, whole or absent (a reader never sees half a file)."""
    torch.save(res, f"{out}/rank{rank}.tmp")
    os.replace(f"{out}/rank{rank}.tmp", f"{out}/rank{rank}.pt")


def run_ranks(worker, out: Path, *args, world: int = 2) -> list[dict]:
    """``worker(rank, world, str(out), *args)`` in ``world`` processes; their saved results.
    Once every rank has written its results only the teardown is left, and gloo's process-group
    destructor can wait forever on a thread that wants the GIL (torch 2.13; seen here, one rank
    gone, the other in ~ProcessGroupGloo): after 30 s the workers are ended."""
    ctx = mp.spawn(worker, args=(world, str(out), *args), nprocs=world, join=False)
    files = [out / f"rank{r}.pt" for r in range(world)]
    done_at = None
    while not ctx.join(timeout=1):  # raises if a worker failed
        if all(f.exists() for f in files):
            done_at = done_at or time.monotonic()
            if time.monotonic() - done_at > 30:
                for p in ctx.processes:
                    p.terminate()
                    p.join(10)
                break
    return [torch.load(f, weights_only=True) for f in files]
