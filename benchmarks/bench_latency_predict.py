"""How well a `LatencyTable` predicts the latency of real slim models, on CPU.

For each model: measure the table (batch 1, 1 thread by default), then for random cuts at about
50% and 30% of the dense latency build the real slim model (`construct_subnet`), time it
interleaved with the dense model (`compare_latency`) and compare the measured slim/dense ratio
with the predicted one. Ratios, not absolute times: the machine is shared (ENVIRONMENT.md).
Writes benchmarks/results/latency_predict.md.
Usage: python benchmarks/bench_latency_predict.py [--models resnet8 resnet50 ...] [--batch 1]
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import machine  # noqa: F401 - this machine's torchvision workaround
import torch

import trainonce  # noqa: E402
from trainonce.report.latency import compare_latency  # noqa: E402
from trainonce.zoo import build_model  # noqa: E402

MODELS = ["resnet8", "resnet50", "mobilenet_v2"]
TARGETS = (0.5, 0.3)  # latency kept
MASKS = 3  # random cuts per target


def build(name: str, batch: int):
    if name == "resnet8":
        return build_model("resnet8").model, torch.randn(batch, 1, 28, 28)
    import torchvision

    return torchvision.models.get_model(name, weights=None), torch.randn(batch, 3, 224, 224)


def random_cut(space, share: float, gen: torch.Generator) -> torch.Tensor:
    """Zero about ``share`` of every prunable channel group's ZIGs (each keeps one)."""
    zero = torch.zeros(space.num_zigs, dtype=torch.bool)
    for g in space.groups:
        if g.prunable and g.size >= 2:
            k = min(int(round(share * g.size)), g.size - 1)
            zero[g.offset + torch.randperm(g.size, generator=gen)[:k]] = True
    return zero


def cut_for(table, space, target: float, seed: int) -> torch.Tensor:
    """A random cut whose predicted latency is ``target`` of the dense one (bisection on the
    share zeroed per group; the table only picks the cut, the slim model is then timed)."""
    lo, hi = 0.0, 0.99
    for _ in range(20):
        mid = (lo + hi) / 2
        zero = random_cut(space, mid, torch.Generator().manual_seed(seed))
        if table.predict(space, zero) / table.dense > target:
            lo = mid
        else:
            hi = mid
    return random_cut(space, (lo + hi) / 2, torch.Generator().manual_seed(seed))


def slim_model(model, space, zero):
    state = copy.deepcopy(model.state_dict())
    space.set_zero(zero)
    slim = trainonce.construct_subnet(model, space)
    model.load_state_dict(state)
    return slim


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" /
                                          "latency_predict.md"))
    args = ap.parse_args()
    torch.manual_seed(0)
    rows = []
    for name in args.models:
        model, x = build(name, 1)
        space = trainonce.analyze(model, x)
        start = time.perf_counter()
        table = trainonce.measure_latency(space, batch_size=args.batch, threads=args.threads,
                                          progress=True)
        took = time.perf_counter() - start
        print(f"{name}: calibration factor {table.alpha:.3f} "
              f"({table.meta.get('calibration')})", flush=True)
        xb = x.repeat(args.batch, 1, 1, 1)
        for target in TARGETS:
            for seed in range(MASKS):
                zero = cut_for(table, space, target, seed)
                predicted = table.predict(space, zero) / table.dense
                slim = slim_model(model, space, zero)
                t = compare_latency({"dense": model, "slim": slim}, xb,
                                    num_threads=args.threads, rounds=10, min_run_time=0.1)
                measured = t["slim"].median / t["dense"].median
                err = predicted / measured - 1
                rows.append((name, f"{took:.0f}", f"{table.alpha:.3f}", f"{target:.0%}", seed,
                             f"{table.dense * 1e3:.2f}", f"{t['dense'].median * 1e3:.2f}",
                             f"{predicted:.3f}", f"{measured:.3f}", f"{err:+.1%}"))
                print(" | ".join(map(str, rows[-1])), flush=True)
    head = ("model | measure s | factor | target | seed | table dense ms | timed dense ms | "
            "predicted slim/dense | measured slim/dense | error")
    lines = [f"# Latency table vs real slim models (batch {args.batch}, {args.threads} thread, "
             f"torch {torch.__version__})", "", head,
             "|".join(["---"] * 10), *(" | ".join(map(str, r)) for r in rows)]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
