"""Wall-clock timing for the latency table: medians of blocks of calls, in interleaved rounds.

Timings are relative: a node's time at a cut is compared with its own time at full width, and
the dense model's forward is sampled all along the measurement, under the same machine load.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

ROUNDS = 5  # blocks per configuration: the median of 5 shrugs off 2 disturbed blocks
# Seconds per block of one op. Reading the clock costs ~0.1 us here, so a 1 ms block reads to
# 1e-4; a block of 200 calls of a 5 us op also averages away the jitter of single calls.
BLOCK = 1e-3
MAX_CALLS = 1000  # per block, for ops of a few nanoseconds (shape-only ops run in ~1 us)
# Seconds per block of whole forwards. Every block follows one untimed forward, since
# whatever ran before evicted the model's weights from the caches: single forwards after node
# timings read resnet8 1.6x slower than in a loop, which is how a slim model is timed and used.
# (Long forwards may not need it; it costs them time, not accuracy.)
FORWARD_BLOCK = 0.1
FORWARD_ROUNDS = 7  # the median of 7 ignores up to 3 rounds disturbed by other processes
# glibc's malloc serves blocks above its mmap threshold (128 KiB at start) with fresh pages
# from the OS, page-faulted on every call; freeing such a block raises the threshold to its size
# (up to 32 MiB). Until some large block was freed, mobilenet_v2 at batch 1 read 26-30 ms per
# forward on 1 thread, afterwards 18.5 ms, as with MALLOC_MMAP_THRESHOLD_=32M from the start.
# The measurement starts from that steady state, which any process that has freed a big
# tensor (a model copy, a larger batch) is in.
_WARM_BLOCK = 31 << 20


def warm_allocator(device: torch.device) -> None:
    """Put the CPU allocator in its steady state (see above) before timing."""
    if device.type == "cpu":
        block = torch.empty(_WARM_BLOCK, dtype=torch.uint8)
        block[::4096] = 0  # touch every page, as a tensor in use would
        del block


def synchronizer(device: torch.device) -> Callable[[], None]:
    """Waits for the device's queued work (a no-op on CPU, where calls are synchronous)."""
    if device.type == "cpu":
        return lambda: None
    return lambda: torch.accelerator.synchronize(device)


def _calls_per_block(fn: Callable[[], object], sync: Callable[[], None],
                     block: float = BLOCK) -> int:
    """Warm ``fn`` up, then how many calls make a block of ``block`` seconds."""
    fn()  # warm-up: first calls allocate, pick kernels and fill caches
    fn()
    sync()
    start = time.perf_counter()
    fn()
    sync()
    once = time.perf_counter() - start
    return max(1, min(MAX_CALLS, int(block / max(once, 1e-9))))


def _block(fn: Callable[[], object], calls: int, sync: Callable[[], None],
           warm: bool = False) -> float:
    if warm:
        fn()
    sync()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    sync()
    return (time.perf_counter() - start) / calls


def time_rounds(makers: list[Callable[[], Callable[[], object]]], sync: Callable[[], None],
                rounds: int = ROUNDS, between: Callable[[], None] = lambda: None,
                report: Callable[[int], None] = lambda r: None) -> list[float]:
    """Median seconds per call of the calls that ``makers`` return (each maker builds fresh
    inputs). Each round times every configuration once (in reverse order every other round),
    so the blocks of one configuration lie a whole round apart and a burst of load from other
    processes disturbs at most one of them. Every block follows one untimed call: its inputs
    are new, and after hundreds of other shapes oneDNN (which keeps 1024 compiled kernels by
    default) may have to set the op up again. ``between`` runs after every block."""
    calls = [0] * len(makers)
    samples: list[list[float]] = [[] for _ in makers]
    for r in range(rounds):
        for i in range(len(makers)) if r % 2 == 0 else range(len(makers) - 1, -1, -1):
            fn = makers[i]()
            if r == 0:
                calls[i] = _calls_per_block(fn, sync)
            samples[i].append(_block(fn, calls[i], sync, warm=r > 0))
            between()
        report(r + 1)
    return [statistics.median(s) for s in samples]


def time_forwards(fns: list[Callable[[], object]], sync: Callable[[], None],
                  rounds: int = FORWARD_ROUNDS) -> list[float]:
    """Median seconds per call of whole model forwards, timed in interleaved rounds (in
    reverse order every other round, so a trend in the load cancels), each block after one
    untimed forward."""
    calls = [_calls_per_block(fn, sync, FORWARD_BLOCK) for fn in fns]
    samples: list[list[float]] = [[] for _ in fns]
    for r in range(rounds):
        for i in range(len(fns)) if r % 2 == 0 else range(len(fns) - 1, -1, -1):
            samples[i].append(_block(fns[i], calls[i], sync, warm=True))
    return [statistics.median(s) for s in samples]


class DenseClock:
    """The dense model's forward, sampled now and then during the measurement (``tick``) so
    that its median sees the same machine load as the node timings."""

    def __init__(self, forward: Callable[[], object], sync: Callable[[], None],
                 share: float = 0.1) -> None:
        self.forward, self.sync, self.share = forward, sync, share
        self.calls = _calls_per_block(forward, sync, FORWARD_BLOCK)
        self.samples: list[float] = []
        self.spent = 0.0  # seconds spent on the dense model
        self.started = time.perf_counter()
        for _ in range(ROUNDS):
            self._sample()

    def _sample(self) -> None:
        start = time.perf_counter()
        self.samples.append(_block(self.forward, self.calls, self.sync, warm=True))
        self.spent += time.perf_counter() - start

    def tick(self) -> None:
        """One more sample if the dense model got less than ``share`` of the time so far."""
        if self.spent < self.share * (time.perf_counter() - self.started):
            self._sample()

    def finish(self) -> float:
        """The median seconds per dense forward."""
        for _ in range(ROUNDS):
            self._sample()
        return statistics.median(self.samples)
