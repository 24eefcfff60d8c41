"""At the same measured latency, is the latency budget at least as accurate as the FLOPs budget?

For each seed: `trainonce run` with its defaults at --target-flops 0.5 (5k MNIST, resnet8,
8-aligned widths), whose report measures the slim/dense latency L (batch 1, 1 thread); then the
same run with --target-latency L, which spends that latency where the table says it buys the
most. Test accuracy and the measured latency of both, mean and spread over the seeds.
Usage: python benchmarks/bench_latency_accuracy.py [--seeds 3] [--epochs 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from trainonce.cli.main import main as cli

HERE = Path(__file__).resolve().parent
LABEL = "batch 1, 1 thread"


def one(out: Path, seed: int, epochs: int, target: list[str]) -> dict:
    argv = ["run", "--seed", str(seed), "--epochs", str(epochs), "--no-dense-baseline",
            "--no-progress", "--out", str(out), *target]
    if cli(argv) != 0:
        raise SystemExit(f"run failed: {' '.join(argv)}")
    s = json.loads((out / "summary.json").read_text())
    lat = s["latency_s"][LABEL]
    return {"acc": s["test_accuracy"][1], "latency": lat["slim"]["median"] / lat["dense"]["median"],
            "flops": s["flops"][1] / s["flops"][0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--out", default=str(HERE / "results" / "latency_accuracy.md"))
    args = ap.parse_args()
    rows = {"flops": [], "latency": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            f = one(Path(tmp) / f"f{seed}", seed, args.epochs, ["--target-flops", "0.5"])
            target = f"{min(0.95, f['latency']):.3f}"
            lat = one(Path(tmp) / f"l{seed}", seed, args.epochs, ["--target-latency", target])
            rows["flops"].append(f)
            rows["latency"].append(lat)
            print(f"seed {seed}: flops {f} | latency target {target}: {lat}", flush=True)

    def stat(rs, k):
        v = [r[k] for r in rs]
        return f"{statistics.mean(v):.4f} ± {statistics.pstdev(v):.4f}"

    lines = [f"# Latency budget vs FLOPs budget at the same measured latency (5k MNIST, resnet8, "
             f"{args.epochs} epochs, {args.seeds} seeds)", "",
             "Command: `python benchmarks/bench_latency_accuracy.py " + " ".join(sys.argv[1:]) +
             "`", "", "| budget | test accuracy | measured slim/dense latency (batch 1, 1 "
             "thread) | FLOPs kept |", "|---|---|---|---|"]
    for k, rs in rows.items():
        name = "--target-flops 0.5" if k == "flops" else "--target-latency L (L from the left)"
        lines.append(f"| {name} | {stat(rs, 'acc')} | {stat(rs, 'latency')} | "
                     f"{stat(rs, 'flops')} |")
    lines += ["", "Per seed: " + "; ".join(
        f"seed {i}: {a['acc']:.4f} @ {a['latency']:.3f} vs {b['acc']:.4f} @ {b['latency']:.3f}"
        for i, (a, b) in enumerate(zip(rows["flops"], rows["latency"])))]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
